"""The subscriber stand-in (in-process, httpx's ASGI transport): its hand-written signature check
agrees with the reference package, it answers queued replies in order (a 204 with no body, a 302
with its Location, a 429 with Retry-After), refuses what does not verify, and is driven through
its admin API too."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from cadastre.simulators.subscriber import Reply, SubscriberSimulator
from cadastre.testing import FakeClock
from cadastre.webhooks.standard import new_secret

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def signed(secret: str, msg_id: str, body: bytes, when: datetime = NOW) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


@pytest.fixture
def sim() -> SubscriberSimulator:
    return SubscriberSimulator(clock=FakeClock(NOW), secrets=[new_secret()])


async def post(sim: SubscriberSimulator, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sub.test") as client:
        return await client.post("/hooks", content=body, headers=headers)


async def test_replies_in_order_then_the_default(sim: SubscriberSimulator) -> None:
    sim.answer(Reply(302, location="http://elsewhere.test/"), Reply(429, retry_after="30"))
    body = b'{"id": "e1"}'
    headers = signed(sim.secrets[0], "e1", body)
    moved = await post(sim, headers, body)
    assert (moved.status_code, moved.headers["location"]) == (302, "http://elsewhere.test/")
    slow = await post(sim, headers, body)
    assert (slow.status_code, slow.headers["retry-after"]) == (429, "30")
    ok = await post(sim, headers, body)
    assert (ok.status_code, ok.content) == (204, b"")
    assert "content-length" not in ok.headers or ok.headers["content-length"] == "0"
    assert [r.status for r in sim.of("e1")] == [302, 429, 204]
    assert [r.webhook_id for r in sim.accepted()] == ["e1"]
    assert all(r.verified and r.at == NOW and r.body == body for r in sim.received)


async def test_signatures_are_checked_like_the_reference(sim: SubscriberSimulator) -> None:
    body = b'{"id": "e2"}'
    good = signed(sim.secrets[0], "e2", body)
    other = signed(new_secret(), "e2", body)
    stale = signed(sim.secrets[0], "e2", body, NOW.replace(minute=54))  # 6 min before NOW
    both = {**good, "webhook-signature": f"{other['webhook-signature']} "
                                         f"{good['webhook-signature']}"}  # fmt: skip
    assert (await post(sim, other, body)).status_code == 401
    assert (await post(sim, stale, body)).status_code == 401
    assert (await post(sim, good, body + b" ")).status_code == 401  # the body changed
    assert (await post(sim, both, body)).status_code == 204  # a rotation: one of two matches
    assert [r.verified for r in sim.received] == [False, False, False, True]
    sim.secrets = []
    assert (await post(sim, other, body)).status_code == 204
    assert sim.received[-1].verified is None  # nothing to check with


async def test_the_admin_api_steers_it(sim: SubscriberSimulator) -> None:
    transport = httpx.ASGITransport(sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sub.test") as client:
        queued = await client.post("/admin/replies", json=[{"status": 500}, {"status": 410}])
        assert queued.json() == {"queued": 2}
        assert (await client.post("/admin/default", json={"status": 202})).json()["status"] == 202
        assert (await client.post("/admin/replies", json=[{"status": 99}])).status_code == 400
        assert (await client.post("/admin/secrets", json={"secrets": []})).status_code == 200
        statuses = [(await client.post("/hooks", content=b"{}")).status_code for _ in range(3)]
        assert statuses == [500, 410, 202]
        received = (await client.get("/admin/received")).json()
    assert [r["status"] for r in received] == [500, 410, 202]
    assert sim.stats.requests == 3  # admin calls are not counted


async def test_bad_admin_input_is_a_400_that_changes_nothing(sim: SubscriberSimulator) -> None:
    before = list(sim.secrets)
    transport = httpx.ASGITransport(sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sub.test") as client:
        for path in ("/admin/secrets", "/admin/replies", "/admin/default"):
            answer = await client.post(path, content=b"{not json")
            assert answer.status_code == 400, path
        assert (await client.post("/admin/secrets", json={"secrets": [1]})).status_code == 400
    assert sim.secrets == before
    assert not sim.replies
