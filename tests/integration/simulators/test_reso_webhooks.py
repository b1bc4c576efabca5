"""The RESO simulator's webhooks over real HTTP on loopback: every data change is pushed as a
RESO EntityEvent notification signed per Standard Webhooks, without slowing the admin call that
made it; a seeded drop rate drops the same notifications every run; non-2xx answers are retried on
the simulator's clock and then given up; held notifications are released reordered and
duplicated; the admin API refuses bad subscriptions and never shows the secret."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.simulators import ResoSimulator, SystemClock, serve
from cadastre.testing import FakeClock
from cadastre.webhooks.standard import matches, new_secret, secret_key

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        parsed = orjson.loads(self.body)
        assert parsed["@reso.context"] == CONTEXT
        events: list[dict[str, Any]] = parsed["value"]
        return events


@dataclass
class Receiver:
    """A subscriber endpoint on loopback: it keeps what it is sent and answers with
    ``answer(n)`` for the n-th request (0-based), 204 by default."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    answer: Callable[[int], int] = lambda n: 204
    gate: asyncio.Event | None = None  # when set, requests wait for it before answering

    async def endpoint(self, request: Request) -> Response:
        self.got.append(Received(dict(request.headers), await request.body()))
        if self.gate is not None:
            await self.gate.wait()
        return Response(status_code=self.answer(len(self.got) - 1))

    def keys(self) -> list[str]:
        return [e["ResourceRecordKey"] for r in self.got for e in r.events]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = Starlette(routes=[Route("/hook", rx.endpoint, methods=["POST"])])
    async with serve(app) as running:
        rx.url = f"{running.url}/hook"
        yield rx


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW, autojump=True)


@pytest.fixture
def secret() -> str:
    return new_secret()


async def subscribe(admin: httpx.AsyncClient, rx: Receiver, secret: str, **extra: Any) -> None:
    answer = await admin.post("/admin/webhooks", json={"url": rx.url, "secret": secret, **extra})
    assert answer.status_code == 200, answer.text


def verified(received: Received, secret: str) -> bool:
    h = received.headers
    return matches(secret_key(secret), h["webhook-id"], int(h["webhook-timestamp"]),
                   received.body, h["webhook-signature"])  # fmt: skip


async def test_every_change_is_pushed_signed_in_the_dialects_names(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=30, seed=3, clock=clock, rate_limit=None, dialect="bridge")
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret, batch=10)
        touched = (await admin.post("/admin/touch", json={
            "count": 3, "changes": {"ListPrice": 123_000}, "create": 2})).json()  # fmt: skip
        gone = (await admin.post("/admin/delete", json={"count": 1})).json()["deleted"]
        changed = next(k for k in touched["touched"] if k not in gone)
        await admin.post("/admin/media", json={"key": changed, "photos": 4})
        await sim.webhooks.drain()
    events = [e for r in receiver.got for e in r.events]
    # one notification per change (batch 10): the touch, the create, the delete, the photos
    assert len(receiver.got) == 4
    assert all(verified(r, secret) for r in receiver.got)
    assert [e["EntityEventSequence"] for e in events] == list(range(1, 8))
    assert [e["EventTypes"] for e in events] == [["Updated"]] * 3 + [["Created"]] * 2 + [
        ["Deleted"], ["Updated"]]  # fmt: skip
    # the records as the dialect serves them (Bridge: LivingAreaSqM), taken when they changed
    for event in events[:5]:
        assert event["ResourceName"] == "Property"
        assert event["Data"]["ListingKey"] == event["ResourceRecordKey"]
        assert event["ModificationTimestamp"] == event["Data"]["ModificationTimestamp"]
        assert "LivingArea" not in event["Data"]
        assert "LivingAreaSqM" in event["Data"]
    assert events[0]["Data"]["ListPrice"] == 123_000
    deletion = events[5]
    assert deletion["ResourceRecordKey"] == gone[0]
    assert "Data" not in deletion  # Bridge withdraws a listing: it vanishes
    assert events[6]["Data"]["PhotosCount"] == 4
    assert events[6]["Data"] == dict(sim.records[changed])
    assert sim.webhooks.stats.sent == 4
    await sim.webhooks.stop()


async def test_the_signature_is_the_reference_librarys(receiver: Receiver, secret: str) -> None:
    # The standardwebhooks package checks timestamps against the wall clock: a real one here.
    sim = ResoSimulator(records=5, clock=SystemClock(), rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret)
        await admin.post("/admin/touch", json={"count": 1})
        await sim.webhooks.drain()
    (got,) = receiver.got
    standardwebhooks.Webhook(secret).verify(got.body, got.headers)  # raises when it is wrong
    other = new_secret()
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(got.body, got.headers)
    await sim.webhooks.stop()


async def test_mls_grid_withdrawals_are_updates_carrying_the_flag(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=10, seed=4, clock=clock, rate_limit=None, dialect="mlsgrid")
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret)
        gone = (await admin.post("/admin/delete", json={"count": 2})).json()["deleted"]
        await sim.webhooks.drain()
    events = [e for r in receiver.got for e in r.events]
    assert [e["ResourceRecordKey"] for e in events] == gone
    assert all(e["EventTypes"] == ["Updated"] and e["Data"]["MlgCanView"] is False
               for e in events)  # fmt: skip
    await sim.webhooks.stop()


async def test_a_seeded_drop_rate_drops_the_same_notifications_every_run(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    runs: list[tuple[set[str], set[str]]] = []
    for _ in range(2):
        receiver.got.clear()
        sim = ResoSimulator(records=200, seed=5, clock=clock, rate_limit=None)
        async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
            await subscribe(admin, receiver, secret, drop_rate=0.3, seed=11)
            await admin.post("/admin/touch", json={"count": 100})
            await sim.webhooks.drain()
        sent, dropped = sim.webhooks.keys("sent"), sim.webhooks.keys("dropped")
        assert set(receiver.keys()) == sent
        assert len(sent) + len(dropped) == 100
        assert not sent & dropped
        stats = sim.webhooks.stats
        assert (stats.sent, stats.dropped, stats.attempts) == (len(sent), len(dropped), len(sent))
        runs.append((sent, dropped))
        await sim.webhooks.stop()
    assert runs[0] == runs[1]
    assert 15 <= len(runs[0][1]) <= 45  # about 30 of 100 (a seeded draw, fixed)


async def test_failed_deliveries_are_retried_on_the_simulator_clock_then_given_up(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=10, seed=6, clock=clock, rate_limit=None)
    receiver.answer = lambda n: 503 if n < 2 else 200  # the first two attempts fail
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret, retry_schedule=[10, 60])
        started = clock.monotonic()
        await admin.post("/admin/touch", json={"count": 1})
        await sim.webhooks.drain()
        first = receiver.got
        assert len(first) == 3
        assert len({r.headers["webhook-id"] for r in first}) == 1  # one message, three attempts
        stamps = [int(r.headers["webhook-timestamp"]) for r in first]
        assert [s - stamps[0] for s in stamps] == [0, 10, 70]  # the schedule: 10 s, 60 s
        assert clock.monotonic() - started >= 70
        assert all(verified(r, secret) for r in first)  # each attempt signed at its own time
        assert (sim.webhooks.stats.sent, sim.webhooks.stats.retried) == (1, 2)

        receiver.got = []
        receiver.answer = lambda n: 500  # never answered 2xx: given up after the schedule
        await admin.post("/admin/touch", json={"count": 1})
        await sim.webhooks.drain()
        assert len(receiver.got) == 3
        state = (await admin.get("/admin/webhooks")).json()["stats"]
        assert (state["sent"], state["failed"], state["retried"]) == (1, 1, 4)
        assert sim.webhooks.notifications[-1].outcome == "failed"
    await sim.webhooks.stop()


async def test_delivery_never_holds_up_the_admin_call(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=10, seed=7, clock=clock, rate_limit=None)
    receiver.gate = asyncio.Event()  # the subscriber does not answer until told to
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret)
        for _ in range(3):
            answer = await admin.post("/admin/touch", json={"count": 1}, timeout=5)
            assert answer.status_code == 200
        assert sim.webhooks.stats.sent == 0  # made, not yet answered
        receiver.gate.set()
        await sim.webhooks.drain()
        assert sim.webhooks.stats.sent == 3
    await sim.webhooks.stop()


async def test_held_notifications_are_released_reversed_and_duplicated(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=10, seed=8, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret, hold=True, duplicate_rate=1.0)
        key = next(iter(sim.records))
        for price in (100_000, 200_000, 300_000):
            clock.advance(1)
            await admin.post("/admin/touch", json={"keys": [key], "changes": {"ListPrice": price}})
        await sim.webhooks.drain()
        assert receiver.got == []  # held
        released = await admin.post("/admin/webhooks/release", json={"order": "reverse"})
        assert released.json() == {"released": 6}
        await sim.webhooks.drain()
    prices = [r.events[0]["Data"]["ListPrice"] for r in receiver.got]
    assert prices == [300_000, 300_000, 200_000, 200_000, 100_000, 100_000]
    ids = [r.headers["webhook-id"] for r in receiver.got]
    assert len(set(ids)) == 6  # a copy is a new message: only the timestamp tells it apart
    assert sim.webhooks.stats.duplicated == 3
    await sim.webhooks.stop()


async def test_key_only_events_as_rcp_28_writes_them(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=10, seed=9, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret, payload="keys", batch=5)
        touched = (await admin.post("/admin/touch", json={"count": 2})).json()["touched"]
        await sim.webhooks.drain()
    (got,) = receiver.got
    assert got.events == [
        {"EntityEventSequence": i + 1, "ResourceName": "Property", "ResourceRecordKey": key}
        for i, key in enumerate(touched)
    ]
    await sim.webhooks.stop()


async def test_writes_are_pushed_too(receiver: Receiver, clock: FakeClock, secret: str) -> None:
    sim = ResoSimulator(records=3, seed=10, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        await subscribe(client, receiver, secret)
        token = (await client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   auth=("demo-client", "demo-secret"))).json()  # fmt: skip
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        for key in ("NEW0001", "NEW0001"):
            written = await client.post("/odata/Property", headers=headers,
                                        json={"ListingKey": key, "ListPrice": 5})  # fmt: skip
            assert written.status_code == 201
        await sim.webhooks.drain()
    assert [(r.events[0]["ResourceRecordKey"], r.events[0]["EventTypes"]) for r in receiver.got] \
        == [("NEW0001", ["Created"]), ("NEW0001", ["Updated"])]  # fmt: skip
    await sim.webhooks.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"secret": "whsec_" + base64.b64encode(b"k").decode()},  # no url
        {"url": "ftp://example.test/", "secret": "whsec_" + base64.b64encode(b"k").decode()},
        {"url": "http://127.0.0.1:9/", "secret": "not-a-whsec"},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_!!!"},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_a2V5", "drop_rate": 1.5},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_a2V5", "batch": 0},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_a2V5", "payload": "everything"},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_a2V5", "retry_schedule": [-1]},
        {"url": "http://127.0.0.1:9/", "secret": "whsec_a2V5", "colour": "blue"},
    ],
)
async def test_a_bad_subscription_is_refused_and_changes_nothing(body: dict[str, Any]) -> None:
    sim = ResoSimulator(records=2, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        answer = await admin.post("/admin/webhooks", json=body)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "BadRequest"
        assert "whsec" not in answer.json()["error"]["message"].replace("whsec_ followed", "")
        assert (await admin.get("/admin/webhooks")).json()["subscription"] is None
    assert not sim.webhooks.active


async def test_the_admin_state_never_shows_the_secret_and_delete_unsubscribes(
    receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    sim = ResoSimulator(records=5, seed=12, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await subscribe(admin, receiver, secret, hold=True)
        await admin.post("/admin/touch", json={"count": 2})
        state = await admin.get("/admin/webhooks")
        assert secret not in state.text
        assert secret.removeprefix("whsec_") not in state.text
        assert state.json()["subscription"]["secret"] == "***"
        assert secret not in (await admin.get("/admin/stats")).text
        assert (await admin.delete("/admin/webhooks")).json()["subscription"] is None
        await admin.post("/admin/touch", json={"count": 2})  # nobody subscribed: nothing made
        await sim.webhooks.drain()
    assert receiver.got == []
    assert [n.outcome for n in sim.webhooks.notifications] == ["cancelled", "cancelled"]
