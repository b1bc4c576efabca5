"""The Buildium simulator over real HTTP on loopback: key-pair auth, the 10 requests a second
limit on the shared fake clock, limit/offset paging with its clamp and case-sensitive names,
last-updated filters, whole-object PUTs, and signed webhooks with the vendor's retry schedule and
suspension (verified by the hub's own ``buildium`` verifier)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.ports import Secret
from cadastre.simulators import serve
from cadastre.simulators.buildium import BuildiumSimulator, WebhookSettings
from cadastre.testing import FakeClock
from cadastre.webhooks.settings import Scheme
from cadastre.webhooks.settings import WebhookSettings as HubWebhookSettings
from cadastre.webhooks.verify import verifier

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
KEYS = {"x-buildium-client-id": "demo-client-id", "x-buildium-client-secret": "demo-client-secret"}
HOOK_SECRET = "buildium-hook-secret"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def _client(sim: BuildiumSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        yield client


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[BuildiumSimulator]:
    simulator = BuildiumSimulator(units=40, seed=3, clock=clock, rate_limit=None)
    yield simulator
    await simulator.webhooks.stop()


@pytest.fixture
async def api(sim: BuildiumSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(sim):
        yield client


def got(sim: BuildiumSimulator, resource: str, id: int) -> dict[str, Any]:
    """The object as the simulator serves it (it must exist)."""
    found = sim.get(resource, id)
    assert found is not None, (resource, id)
    return found


# ------------------------------------------------------------------------------------ auth


async def test_requests_without_the_key_pair_are_401_with_buildiums_error_body(
    api: httpx.AsyncClient,
) -> None:
    for headers in ({}, {"x-buildium-client-id": "demo-client-id"},
                    {**KEYS, "x-buildium-client-secret": "wrong"}):  # fmt: skip
        answer = await api.get("/v1/rentals/units", headers=headers)
        assert answer.status_code == 401
        body = answer.json()
        assert set(body) == {"UserMessage", "ErrorCode", "Errors"}
        assert body["Errors"] == []
    assert (await api.get("/v1/rentals/units", headers=KEYS)).status_code == 200


# ------------------------------------------------------------------------------ rate limit


async def test_the_eleventh_request_in_a_second_is_429_without_retry_after(
    clock: FakeClock,
) -> None:
    sim = BuildiumSimulator(units=5, clock=clock)  # the vendor's 10/s
    async for api in _client(sim):
        answers = [await api.get("/v1/rentals/units", headers=KEYS) for _ in range(12)]
        assert [a.status_code for a in answers] == [200] * 10 + [429] * 2
        assert "retry-after" not in answers[-1].headers
        assert set(answers[-1].json()) == {"UserMessage", "ErrorCode", "Errors"}
        assert sim.stats.rate_limit_violations == 2
        clock.advance(1.0)  # the window slides on the shared clock
        assert (await api.get("/v1/rentals/units", headers=KEYS)).status_code == 200
    assert (await _admin_stats(sim))["rate_limit_violations"] == 2


async def _admin_stats(sim: BuildiumSimulator) -> dict[str, Any]:
    async for api in _client(sim):
        return dict((await api.get("/admin/stats")).json())
    raise AssertionError


# --------------------------------------------------------------------------------- paging


async def test_limit_defaults_to_50_clamps_at_1000_and_totals_in_x_total_count(
    clock: FakeClock,
) -> None:
    sim = BuildiumSimulator(units=1100, seed=1, clock=clock, rate_limit=None)
    async for api in _client(sim):
        default = await api.get("/v1/rentals/units", headers=KEYS)
        assert len(default.json()) == 50
        assert default.headers["X-Total-Count"] == "1100"
        clamped = await api.get("/v1/rentals/units", headers=KEYS, params={"limit": 5000})
        assert clamped.status_code == 200  # silently clamped, not refused
        assert len(clamped.json()) == 1000
        rest = await api.get("/v1/rentals/units", headers=KEYS,
                             params={"limit": 1000, "offset": 1000})  # fmt: skip
        ids = [u["Id"] for u in clamped.json()] + [u["Id"] for u in rest.json()]
        assert ids == sorted(sim.ids("units"))
        zero = await api.get("/v1/rentals/units", headers=KEYS, params={"limit": 0})
        assert zero.status_code == 400
        assert zero.json()["Errors"][0]["Key"] == "limit"


async def test_wrong_case_paging_names_are_404_and_a_long_query_is_500(
    api: httpx.AsyncClient,
) -> None:
    for name in ("Limit", "OFFSET", "Offset"):
        answer = await api.get("/v1/leases", headers=KEYS, params={name: 1})
        assert answer.status_code == 404, name
    long = await api.get("/v1/leases/tenants", headers=KEYS, params={"name": "x" * 4100})
    assert long.status_code == 500
    fine = await api.get("/v1/leases/tenants", headers=KEYS, params={"name": "x" * 4000})
    assert fine.status_code == 200


async def test_orderby_sorts_by_any_property_and_refuses_unknown_ones(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    answer = await api.get("/v1/rentals/units", headers=KEYS,
                           params={"orderby": "marketrent desc,Id asc", "limit": 1000})  # fmt: skip
    rents = [(u["MarketRent"], u["Id"]) for u in answer.json()]
    assert rents == sorted(rents, key=lambda r: (-r[0], r[1]))
    bad = await api.get("/v1/rentals/units", headers=KEYS, params={"orderby": "Nope"})
    assert bad.status_code == 400


async def test_lastupdated_filters_select_by_each_objects_last_update(
    api: httpx.AsyncClient, sim: BuildiumSimulator, clock: FakeClock
) -> None:
    clock.advance(3600)
    tenant = sim.ids("tenants")[4]
    sim.ui_edit("tenants", tenant, {"FirstName": "Edited"})
    since = {"lastupdatedfrom": "2026-11-27T10:00:00Z"}
    answer = await api.get("/v1/leases/tenants", headers=KEYS, params=since)
    assert [t["Id"] for t in answer.json()] == [tenant]
    assert answer.headers["X-Total-Count"] == "1"
    assert "LastUpdatedDateTime" not in answer.json()[0]  # tenants do not serve it
    until: dict[str, str | int] = {"lastupdatedto": "2026-11-27T09:59:59Z", "limit": 1000}
    before = await api.get("/v1/leases/tenants", headers=KEYS, params=until)
    assert tenant not in [t["Id"] for t in before.json()]
    assert len(before.json()) == len(sim.ids("tenants")) - 1
    bad = await api.get("/v1/leases/tenants", headers=KEYS,
                        params={"lastupdatedfrom": "2026-11-27 10:00"})  # fmt: skip
    assert bad.status_code == 400


# --------------------------------------------------------------------------------- writes


async def test_a_put_replaces_the_whole_object_blanking_what_it_leaves_out(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    tenant = sim.ids("tenants")[0]
    before = got(sim, "tenants", tenant)
    assert before is not None
    assert before["Email"]
    assert before["PhoneNumbers"]
    body = {"FirstName": "Renamed", "LastName": before["LastName"], "Address": before["Address"]}
    answer = await api.put(f"/v1/leases/tenants/{tenant}", headers=KEYS, json=body)
    assert answer.status_code == 200
    after = got(sim, "tenants", tenant)
    assert after is not None
    assert after["FirstName"] == "Renamed"
    assert after["Email"] is None  # left out: blanked, as Buildium documents
    assert after["PhoneNumbers"] == []
    assert after["MailingPreference"] is None
    assert after["CreatedDateTime"] == before["CreatedDateTime"]  # not part of the message
    assert sim.stats.puts[f"tenants/{tenant}"] == 1
    assert sim.stats.api_updates["tenants"] == 1


async def test_writes_are_checked_like_buildium_checks_them(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    tenant = sim.ids("tenants")[0]
    missing = await api.put(f"/v1/leases/tenants/{tenant}", headers=KEYS, json={"FirstName": "A"})
    assert missing.status_code == 400
    assert {e["Key"] for e in missing.json()["Errors"]} == {"LastName", "Address"}
    text = await api.put(f"/v1/leases/tenants/{tenant}", headers={**KEYS,
                         "content-type": "text/plain"}, content=b"{}")  # fmt: skip
    assert text.status_code == 415
    gone = await api.put("/v1/leases/tenants/99999", headers=KEYS, json={})
    assert gone.status_code == 404
    assert sim.stats.api_updates["tenants"] == 0  # nothing was written


async def test_a_post_creates_with_location_and_twice_creates_twice(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    lease = next(i for i in sim.ids("leases") if got(sim, "leases", i)["LeaseStatus"] == "Active")
    unit = got(sim, "units", got(sim, "leases", lease)["UnitId"])
    body = {"LeaseId": lease, "FirstName": "New", "LastName": "Person",
            "Email": "new.person@example.com", "Address": unit["Address"]}  # fmt: skip
    first = await api.post("/v1/leases/tenants", headers=KEYS, json=body)
    assert first.status_code == 201
    assert first.headers["Location"].endswith(f"/v1/leases/tenants/{first.json()['Id']}")
    again = await api.post("/v1/leases/tenants", headers=KEYS, json=body)
    assert again.status_code == 201
    assert again.json()["Id"] != first.json()["Id"]
    assert sim.stats.api_creates["tenants"] == 2
    listed = await api.get(first.headers["Location"], headers=KEYS)
    assert listed.json()["Email"] == "new.person@example.com"
    assert lease in [lease_["Id"] for lease_ in listed.json()["Leases"]]


async def test_a_tenant_on_a_past_lease_is_a_409(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    lease = sim.ids("leases")[0]
    sim.book.leases[lease].data["LeaseStatus"] = "Past"
    address = {"AddressLine1": "1 A St", "PostalCode": "12345", "Country": "UnitedStates"}
    body = {"LeaseId": lease, "FirstName": "A", "LastName": "B", "Address": address}
    answer = await api.post("/v1/leases/tenants", headers=KEYS, json=body)
    assert answer.status_code == 409
    assert answer.json()["ErrorCode"] == "Conflict"


async def test_a_write_failing_after_commit_took_effect_and_one_failing_before_did_not(
    api: httpx.AsyncClient, sim: BuildiumSimulator
) -> None:
    unit = sim.ids("units")[0]
    served = got(sim, "units", unit)
    assert served is not None
    body = {k: served[k] for k in ("UnitNumber", "UnitSize", "Address", "UnitBedrooms",
                                   "UnitBathrooms", "Description")}  # fmt: skip
    sim.fail_writes(1)
    refused = await api.put(f"/v1/rentals/units/{unit}", headers=KEYS,
                            json={**body, "MarketRent": 1111.0})  # fmt: skip
    assert refused.status_code == 500
    assert got(sim, "units", unit)["MarketRent"] == served["MarketRent"]
    sim.fail_writes(1, after_commit=True)
    lost = await api.put(f"/v1/rentals/units/{unit}", headers=KEYS,
                         json={**body, "MarketRent": 2222.0})  # fmt: skip
    assert lost.status_code == 500
    assert got(sim, "units", unit)["MarketRent"] == 2222.0  # it happened; the answer was lost
    assert sim.stats.writes_failed == 2


# ------------------------------------------------------------------------------- webhooks


@dataclass
class Receiver:
    status: int = 200
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    at: list[float] = field(default_factory=list)


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[tuple[Receiver, str]]:
    state = Receiver()

    async def hook(request: Request) -> Response:
        state.seen.append((dict(request.headers), await request.body()))
        state.at.append(clock.monotonic())
        return Response(status_code=state.status)

    async with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as running:
        yield state, f"{running.url}/hook"


async def _until(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached")


async def test_events_are_thin_and_signed_so_the_hubs_verifier_accepts_them(
    sim: BuildiumSimulator, receiver: tuple[Receiver, str], clock: FakeClock
) -> None:
    state, url = receiver
    sim.webhooks.configure(WebhookSettings(url=url, secret=HOOK_SECRET))
    tenant = sim.ids("tenants")[2]
    sim.ui_edit("tenants", tenant, {"Email": "moved@example.com"})
    await sim.webhooks.drain()
    ((headers, body),) = state.seen
    assert body == (b'{"EventName":"LeaseTenant.Updated","EventDateTime":"2026-11-27T09:00:00.'
                    b'0000000Z","AccountId":123456,"TenantId":%d}' % tenant)  # fmt: skip
    check = verifier(HubWebhookSettings(scheme=Scheme.BUILDIUM, credential="pms-hooks"))
    check.check_headers(headers, clock.now())
    assert check.verify("POST", url, headers, body, [Secret(HOOK_SECRET)])
    forged = {**headers, "buildium-webhook-signature": "AAAA" + headers[
        "buildium-webhook-signature"][4:]}  # fmt: skip
    with pytest.raises(Exception, match="signature"):
        check.verify("POST", url, forged, body, [Secret(HOOK_SECRET)])


async def test_failed_callbacks_are_retried_after_1_min_10_min_and_1_hour_then_dropped(
    sim: BuildiumSimulator, receiver: tuple[Receiver, str], clock: FakeClock
) -> None:
    state, url = receiver
    state.status = 500
    sim.webhooks.configure(WebhookSettings(url=url, secret=HOOK_SECRET))
    sim.ui_edit("units", sim.ids("units")[0], {"MarketRent": 1000.0})
    await _until(lambda: len(state.seen) == 1 and clock.sleepers == 1)
    for wait, attempts in ((60, 2), (600, 3), (3600, 4)):
        clock.advance(wait - 1)
        await asyncio.sleep(0.05)
        assert len(state.seen) == attempts - 1  # not before its time
        clock.advance(1)
        await _until(lambda n=attempts: len(state.seen) == n)
    await sim.webhooks.drain()
    assert state.at == [0, 60, 660, 4260]
    # each attempt is signed anew with its send time
    assert [h["buildium-webhook-timestamp"] for h, _ in state.seen] == [
        str(int(NOW.timestamp()) + s) for s in (0, 60, 660, 4260)
    ]
    assert sim.webhooks.stats.failed == 1
    assert sim.webhooks.stats.retried == 3
    assert sim.webhooks.notifications[0].outcome == "failed"


async def test_twenty_failures_in_a_row_suspend_the_subscription(
    sim: BuildiumSimulator, receiver: tuple[Receiver, str], clock: FakeClock
) -> None:
    state, url = receiver
    state.status = 503
    sim.webhooks.configure(WebhookSettings(url=url, secret=HOOK_SECRET, retry_schedule=()))
    for unit in sim.ids("units")[:25]:
        sim.ui_edit("units", unit, {"Description": "painted"})
    await sim.webhooks.drain()
    assert len(state.seen) == 20  # the twentieth failure suspended it
    assert sim.webhooks.suspended
    assert sim.webhooks.stats.suspended == 5
    assert sim.webhooks.stats.suspensions == 1
    state.status = 200
    sim.ui_edit("units", sim.ids("units")[0], {"Description": "again"})
    await sim.webhooks.drain()
    assert len(state.seen) == 20  # nothing is sent while suspended
    sim.webhooks.enable()  # a person enables it again
    sim.ui_edit("units", sim.ids("units")[0], {"Description": "once more"})
    await sim.webhooks.drain()
    assert len(state.seen) == 21
    assert sim.webhooks.stats.sent == 1


async def test_held_events_are_released_in_reverse_and_duplicates_come_twice(
    sim: BuildiumSimulator, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    sim.webhooks.configure(WebhookSettings(url=url, secret=HOOK_SECRET, hold=True))
    units = sim.ids("units")[:3]
    for unit in units:
        sim.ui_edit("units", unit, {"Description": "x"})
    assert sim.webhooks.release("reverse") == 3
    await sim.webhooks.drain()
    assert [orjson.loads(b)["UnitId"] for _, b in state.seen] == list(reversed(units))
    sim.webhooks.configure(WebhookSettings(url=url, secret=HOOK_SECRET, duplicate_rate=1.0))
    sim.ui_edit("units", units[0], {"Description": "y"})
    await sim.webhooks.drain()
    assert state.seen[-1][1] == state.seen[-2][1]  # the same event twice
