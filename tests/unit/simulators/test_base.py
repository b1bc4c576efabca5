"""What every simulator shares: the vendor rate limit, each fault kind, stats and admin calls."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Message

from cadastre.simulators import FaultKind, FaultProfile, InjectedReset, RateLimit, ResoSimulator
from cadastre.simulators.ratelimit import RateLimiter
from cadastre.testing import FakeClock

from .conftest import bearer, client_for

# ----------------------------------------------------------------------------- rate limiting


def test_sliding_window_admits_n_in_any_window_and_says_when_a_slot_frees() -> None:
    limiter = RateLimiter(RateLimit(requests=2, per=10.0))
    assert limiter.admit(0.0).admitted
    assert limiter.admit(4.0).admitted
    refused = limiter.admit(6.5)
    assert not refused.admitted
    assert refused.retry_after == 4  # the slot taken at 0.0 frees at 10.0: ceil(3.5)
    assert limiter.admit(10.0).admitted  # 0.0 left the window
    assert not limiter.admit(13.9).admitted  # 4.0 and 10.0 still in it
    assert limiter.admit(14.0).admitted


def test_fixed_window_resets_at_the_boundary() -> None:
    limiter = RateLimiter(RateLimit(requests=2, per=10.0, window="fixed"))
    assert limiter.admit(8.0).admitted
    assert limiter.admit(9.0).admitted
    refused = limiter.admit(9.2)
    assert (refused.admitted, refused.retry_after) == (False, 1)
    assert limiter.admit(10.0).admitted
    assert limiter.admit(10.1).admitted
    assert limiter.admit(19.0).retry_after == 1


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter(RateLimit(requests=1, per=0.01))
    limiter.admit(0.0)
    assert limiter.admit(0.001).retry_after == 1


@pytest.mark.parametrize(
    "kwargs", [{"requests": 0}, {"requests": 1, "per": 0}, {"requests": 1, "window": "leaky"}]
)
def test_rate_limit_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"window|request"):
        RateLimit(**kwargs)


async def test_requests_over_the_limit_get_429_and_count_as_violations(clock: FakeClock) -> None:
    sim = ResoSimulator(records=3, clock=clock, rate_limit=RateLimit(requests=3, per=1.0))
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        statuses = [(await client.get("/odata/Property")).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        refused = await client.get("/odata/Property")
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "TooManyRequests"
        assert sim.stats.rate_limit_violations == 3
        assert (await client.get("/admin/stats")).status_code == 200  # admin is not limited
        clock.advance(1.0)
        assert (await client.get("/odata/Property")).status_code == 200
    assert sim.stats.requests == 8  # the token request counts too
    assert sim.stats.rate_limit_violations == 3


async def test_rate_limit_can_be_changed_while_running(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        response = await client.post("/admin/rate-limit", json={"requests": 1, "per": 5})
        assert response.json() == {
            "requests": 1,
            "per": 5,
            "window": "sliding",
            "also": [],
            "headers": None,
        }
        assert [(await client.get("/odata/$metadata")).status_code for _ in range(2)] == [200, 429]
        assert (await client.post("/admin/rate-limit", json=None)).json() is None
        assert (await client.get("/odata/$metadata")).status_code == 200
        bad = await client.post("/admin/rate-limit", json={"requests": 0})
        assert bad.status_code == 400
    assert sim.rate_limit is None


# ----------------------------------------------------------------------------------- faults


@pytest.fixture
def faulty(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=3, clock=clock, rate_limit=None)


async def test_error_faults_answer_500_502_or_503(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(error_rate=1.0, seed=3)
        statuses = {(await client.get("/odata/Property")).status_code for _ in range(30)}
    assert statuses == {500, 502, 503}
    assert faulty.stats.faults_injected == {"error": 30}


async def test_throttle_faults_with_and_without_retry_after(
    faulty: ResoSimulator, clock: FakeClock
) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(throttle_rate=1.0, retry_after=7)
        response = await client.get("/odata/Property")
        assert (response.status_code, response.headers["retry-after"]) == (429, "7")
        faulty.faults = FaultProfile(throttle_rate=1.0, retry_after=7, retry_after_http_date=True)
        dated = await client.get("/odata/Property")
        when = parsedate_to_datetime(dated.headers["retry-after"])
        assert when == clock.now() + timedelta(seconds=7)
        faulty.faults = FaultProfile(throttle_no_retry_after_rate=1.0)
        bare = await client.get("/odata/Property")
        assert bare.status_code == 429
        assert "retry-after" not in bare.headers
    assert faulty.stats.rate_limit_violations == 0  # injected 429s are not the vendor's limit
    assert faulty.stats.faults_injected == {"throttle": 2, "throttle_no_retry_after": 1}


async def test_garbage_is_a_200_that_is_not_json_at_all(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(garbage_rate=1.0)
        response = await client.get("/odata/Property")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")  # a proxy's error page
    assert response.content.startswith(b"<!DOCTYPE html>")
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


async def test_truncated_is_a_complete_200_of_json_cut_mid_record(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(truncated_rate=1.0)
        response = await client.get("/odata/Property")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # The transfer is whole (the declared length arrived); only the JSON inside is cut off.
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content.startswith(b'{"@odata.context"')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert faulty.stats.faults_injected == {"truncated": 1}


async def test_a_hang_never_answers(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(hang_rate=1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/odata/Property"), timeout=0.2)
    assert faulty.stats.faults_injected == {"hang": 1}


async def test_a_reset_starts_a_response_then_breaks_it(faulty: ResoSimulator) -> None:
    faulty.faults = FaultProfile(reset_rate=1.0)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/odata/Property", "headers": [],
        "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80),
    }  # fmt: skip
    with pytest.raises(InjectedReset):
        await faulty.app(scope, receive, send)
    start, body = sent
    declared = int(dict(start["headers"])[b"content-length"])
    assert start["status"] == 200
    assert body["more_body"] is True
    assert len(body["body"]) < declared


async def test_latency_waits_on_the_simulator_clock(
    faulty: ResoSimulator, clock: FakeClock
) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(latency=30.0)
        request = asyncio.ensure_future(client.get("/odata/Property"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not request.done()
        assert clock.sleepers == 1
        clock.advance(29.0)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not request.done()
        clock.advance(1.0)
        response = await request
    assert response.status_code == 200
    assert faulty.stats.faults_injected == {"latency": 1}


async def test_latency_keeps_the_request_body_for_the_vendor(
    faulty: ResoSimulator, clock: FakeClock
) -> None:
    async with client_for(faulty) as client:
        faulty.faults = FaultProfile(latency=1.0)
        request = asyncio.ensure_future(
            client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("demo-client", "demo-secret"),
            )
        )
        for _ in range(20):
            await asyncio.sleep(0)
        clock.advance(1.0)
        assert (await request).status_code == 200


async def test_faults_only_hit_their_paths_and_never_admin(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(error_rate=1.0, paths=("/odata/Property",))
        assert (await client.get("/odata/$metadata")).status_code == 200
        assert (await client.get("/odata/Property")).status_code >= 500
        faulty.faults = FaultProfile(error_rate=1.0, paths=("/admin",))
        assert (await client.get("/admin/stats")).status_code == 200
        faulty.faults = FaultProfile(error_rate=1.0)
        assert (await client.get("/admin/stats")).status_code == 200
        assert (await client.post("/admin/reset-stats")).status_code == 200


async def test_the_same_profile_replays_the_same_faults(faulty: ResoSimulator) -> None:
    profile = FaultProfile(error_rate=0.3, throttle_rate=0.2, garbage_rate=0.1, seed=42)

    async def statuses(client: httpx.AsyncClient) -> list[tuple[int, bytes]]:
        faulty.faults = profile
        out = []
        for _ in range(40):
            response = await client.get("/odata/Property", params={"$top": "1"})
            out.append((response.status_code, response.content[:20]))
        return out

    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        first, second = await statuses(client), await statuses(client)
    assert first == second
    assert {status for status, _ in first} >= {200, 429}

    def draws(seed: int) -> list[FaultKind | None]:
        rng = random.Random(seed)
        return [profile.draw(rng) for _ in range(40)]

    assert draws(42) == draws(42) != draws(43)


def test_draws_follow_the_rates() -> None:
    profile = FaultProfile(error_rate=0.25, hang_rate=0.25, reset_rate=0.5)
    rng = random.Random(0)
    kinds = [profile.draw(rng) for _ in range(4000)]
    assert kinds.count(FaultKind.ERROR) == pytest.approx(1000, rel=0.1)
    assert kinds.count(FaultKind.HANG) == pytest.approx(1000, rel=0.1)
    assert kinds.count(FaultKind.RESET) == pytest.approx(2000, rel=0.1)
    assert None not in kinds
    assert FaultProfile().draw(rng) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_rate": 0.6, "hang_rate": 0.6},
        {"latency": -1},
        {"paths": "/odata"},
    ],
)
def test_fault_profile_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"rate|latency|paths"):
        FaultProfile(**kwargs)


async def test_faults_can_be_set_over_admin(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        response = await client.post(
            "/admin/faults", json={"error_rate": 1, "paths": ["/odata/Property"], "seed": 5}
        )
        assert response.status_code == 200
        assert response.json()["paths"] == ["/odata/Property"]
        assert faulty.faults == FaultProfile(error_rate=1.0, paths=("/odata/Property",), seed=5)
        assert (await client.get("/odata/Property")).status_code >= 500
        assert (await client.get("/admin/faults")).json()["error_rate"] == 1.0
        for bad in ({"nope": 1}, {"error_rate": "lots"}, {"error_rate": 2}, [1], {"seed": 1.5}):
            refused = await client.post("/admin/faults", json=bad)
            assert refused.status_code == 400, bad
        not_json = await client.post("/admin/faults", content=b"{")
        assert not_json.status_code == 400
        assert (await client.post("/admin/faults", json={})).json()["error_rate"] == 0.0


async def test_stats_over_admin_and_reset(faulty: ResoSimulator) -> None:
    async with client_for(faulty) as client:
        client.headers.update(await bearer(client))
        faulty.faults = FaultProfile(garbage_rate=1.0)
        await client.get("/odata/Property")
        stats = (await client.get("/admin/stats")).json()
        assert stats == {
            "requests": 2,
            "rate_limit_violations": 0,
            "faults_injected": {"garbage": 1},
            "tokens_issued": 1,
            "in_flight": 0,
            "max_in_flight": 1,
            "creates": 0,
            "applied_by_listing": {},
            "idempotent_replays": 0,
        }
        reset = (await client.post("/admin/reset-stats")).json()
        assert reset == {"requests": 0, "rate_limit_violations": 0, "faults_injected": {},
                         "tokens_issued": 0, "in_flight": 0, "max_in_flight": 0, "creates": 0,
                         "applied_by_listing": {}, "idempotent_replays": 0}  # fmt: skip
    assert faulty.stats.requests == 0
