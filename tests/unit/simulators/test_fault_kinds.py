"""The fault profile's later additions: latency distributions, SLOW answers, lost responses, and
the in-flight gauge that must come back to zero whichever way a request ends."""

from __future__ import annotations

import asyncio
import random
import statistics
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadastre.simulators import (
    FaultProfile,
    InjectedLostResponse,
    InjectedReset,
    RateLimit,
    ResoSimulator,
    Simulator,
)
from cadastre.testing import FakeClock

from .conftest import AFTER_DATA, bearer, client_for

RECORD = {"ListingKey": "NEW00000001", "ListPrice": 350000, "StandardStatus": "Active"}


async def settle(condition: Any = None) -> None:
    """Let the in-process requests run until they park on the fake clock (or ``condition``)."""
    for _ in range(50):
        await asyncio.sleep(0)
        if condition is not None and condition():
            return


# ------------------------------------------------------------------------ latency distributions


def quantile(draws: list[float], share: float) -> float:
    return sorted(draws)[int(share * len(draws))]


def sample(profile: FaultProfile, n: int = 20_000, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [profile.draw_latency(rng) for _ in range(n)]


def test_lognormal_latency_has_the_median_and_p99_asked_for() -> None:
    draws = sample(FaultProfile(latency=0.2, latency_distribution="lognormal", latency_p99=2.0))
    assert quantile(draws, 0.5) == pytest.approx(0.2, rel=0.05)
    assert quantile(draws, 0.99) == pytest.approx(2.0, rel=0.1)
    assert min(draws) > 0


def test_exponential_latency_has_the_mean_asked_for() -> None:
    draws = sample(FaultProfile(latency=0.5, latency_distribution="exponential"))
    assert statistics.fmean(draws) == pytest.approx(0.5, rel=0.05)
    assert quantile(draws, 0.5) == pytest.approx(0.5 * 0.6931, rel=0.05)  # median = mean * ln 2
    assert quantile(draws, 0.99) == pytest.approx(0.5 * 4.605, rel=0.1)  # mean * ln 100


def test_uniform_latency_spreads_between_zero_and_twice_the_mean() -> None:
    draws = sample(FaultProfile(latency=0.5, latency_distribution="uniform"))
    assert 0.0 <= min(draws) < 0.01
    assert 0.99 < max(draws) <= 1.0
    assert statistics.fmean(draws) == pytest.approx(0.5, rel=0.03)


def test_fixed_latency_is_always_the_same() -> None:
    assert set(sample(FaultProfile(latency=0.3), n=100)) == {0.3}
    assert set(sample(FaultProfile(), n=10)) == {0.0}


class RecordingClock(FakeClock):
    """Jumps to every deadline at once and remembers how long each sleep was."""

    def __init__(self) -> None:
        super().__init__(start=AFTER_DATA, autojump=True)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


async def test_the_simulator_waits_seeded_draws_that_repeat() -> None:
    clock = RecordingClock()
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    profile = FaultProfile(latency=0.1, latency_distribution="lognormal", latency_p99=1.0, seed=9)

    async def run() -> list[float]:
        clock.slept.clear()
        sim.faults = profile  # setting a profile restarts its generators
        async with client_for(sim) as client:
            for _ in range(300):
                assert (await client.get("/odata/")).status_code == 200
        return list(clock.slept)

    first = await run()
    assert len(first) == 300
    assert len(set(first)) == 300  # drawn, not fixed
    assert quantile(first, 0.5) == pytest.approx(0.1, rel=0.25)
    assert await run() == first
    sim.faults = FaultProfile(latency=0.1, latency_distribution="lognormal", latency_p99=1.0)
    async with client_for(sim) as client:
        clock.slept.clear()
        await client.get("/odata/")
    assert clock.slept != first[:1]  # another seed, another draw


async def test_latency_jitter_leaves_the_fault_draws_alone() -> None:
    async def statuses(profile: FaultProfile) -> list[int]:
        sim = ResoSimulator(records=1, clock=FakeClock(AFTER_DATA, autojump=True), rate_limit=None)
        sim.faults = profile
        async with client_for(sim) as client:
            return [(await client.get("/odata/")).status_code for _ in range(40)]

    plain = await statuses(FaultProfile(error_rate=0.5, seed=4))
    jittered = await statuses(
        FaultProfile(error_rate=0.5, seed=4, latency=0.2, latency_distribution="exponential")
    )
    assert plain == jittered
    assert {200, 500, 502, 503} >= set(plain) > {200}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": 0.1, "latency_distribution": "lognormal"}, "at least latency"),
        (
            {"latency": 0.5, "latency_distribution": "lognormal", "latency_p99": 0.4},
            "at least latency",
        ),
        ({"latency_distribution": "lognormal", "latency_p99": 1.0}, r"median\) > 0"),
        ({"latency": 0.1, "latency_p99": 1.0}, "lognormal latency_distribution only"),
        ({"latency_distribution": "gamma"}, "one of fixed, uniform"),
        ({"latency_p99": -1.0, "latency_distribution": "lognormal"}, "finite"),
        ({"slow_seconds": -1.0}, "finite"),
        ({"latency": float("nan")}, "finite"),
        ({"slow_rate": 0.5, "lost_response_rate": 0.3, "truncated_rate": 0.3}, "at most 1"),
        ({"lost_response_rate": 1.2}, "between 0 and 1"),
    ],
)
def test_fault_profile_refuses_bad_new_fields(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultProfile(**kwargs)


def test_from_json_reads_the_new_fields_and_names_bad_types() -> None:
    data = {
        "latency": 0.1, "latency_distribution": "lognormal", "latency_p99": 2,
        "truncated_rate": 0.1, "slow_rate": 0.2, "lost_response_rate": 0.3, "slow_seconds": 30,
    }  # fmt: skip
    profile = FaultProfile.from_json(data)
    assert profile.latency_p99 == 2.0
    assert profile.slow_seconds == 30.0
    assert FaultProfile.from_json(profile.to_json()) == profile
    bad: list[tuple[dict[str, Any], str]] = [
        ({"latency_distribution": 3}, "latency_distribution is a string"),
        ({"latency_p99": "high"}, "latency_p99 is a number"),
        ({"slow_seconds": True}, "slow_seconds is a number"),
        ({"lost_response_rate": None}, "lost_response_rate is a number"),
        ({"lost_responses": 0.1}, "unknown fault profile fields"),
    ]
    for fields, message in bad:
        with pytest.raises(ValueError, match=message):
            FaultProfile.from_json(fields)


async def test_the_new_fields_over_admin(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        body = {"slow_rate": 1, "slow_seconds": 5, "latency": 1, "latency_distribution": "uniform"}
        response = await client.post("/admin/faults", json=body)
        assert response.status_code == 200
        assert response.json()["latency_distribution"] == "uniform"
        assert sim.faults == FaultProfile(
            slow_rate=1.0, slow_seconds=5.0, latency=1.0, latency_distribution="uniform"
        )
        refused = await client.post("/admin/faults", json={"latency_distribution": "normal"})
        assert refused.status_code == 400
        assert "latency_distribution" in refused.json()["error"]["message"]
    assert sim.faults.slow_rate == 1.0  # a refused profile leaves the old one in place


# ------------------------------------------------------------------------------------ slow


async def test_slow_answers_normally_after_slow_seconds(clock: FakeClock) -> None:
    sim = ResoSimulator(records=3, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        sim.faults = FaultProfile(slow_rate=1.0, slow_seconds=60, latency=5.0)
        request = asyncio.ensure_future(client.get("/odata/Property"))
        await settle(lambda: clock.sleepers == 1)
        clock.advance(59.0)  # well past the latency: SLOW replaces it
        await settle()
        assert not request.done()
        clock.advance(1.0)
        response = await request
    assert response.status_code == 200
    assert len(response.json()["value"]) == 3
    assert sim.stats.faults_injected == {"slow": 1}


async def test_slow_seconds_default_to_a_minute(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        sim.faults = FaultProfile(slow_rate=1.0)
        request = asyncio.ensure_future(client.get("/odata/"))
        await settle(lambda: clock.sleepers == 1)
        clock.advance(59.9)
        await settle()
        assert not request.done()
        clock.advance(0.1)
        assert (await request).status_code == 200


# --------------------------------------------------------------------------- lost responses


async def test_a_lost_response_applies_the_write_and_answers_nothing(clock: FakeClock) -> None:
    sim = ResoSimulator(records=3, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        sim.faults = FaultProfile(lost_response_rate=1.0)
        with pytest.raises(InjectedReset) as raised:
            await client.post("/odata/Property", json=RECORD)
        assert isinstance(raised.value, InjectedLostResponse)
        assert sim.stats.applied_by_listing == {"NEW00000001": 1}
        assert sim.records["NEW00000001"]["ListPrice"] == 350000
        with pytest.raises(InjectedLostResponse):
            await client.get("/odata/Property")  # reads are lost the same way
    assert sim.stats.faults_injected == {"lost_response": 2}
    assert sim.stats.in_flight == 0


# ------------------------------------------------------------------------------- in flight


async def test_in_flight_counts_concurrent_requests_and_keeps_the_peak(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        sim.faults = FaultProfile(latency=1.0)
        requests = [asyncio.ensure_future(client.get("/odata/")) for _ in range(5)]
        await settle(lambda: clock.sleepers == 5)
        assert (sim.stats.in_flight, sim.stats.max_in_flight) == (5, 5)
        await client.get("/admin/stats")  # admin is not counted
        assert sim.stats.in_flight == 5
        clock.advance(1.0)
        await asyncio.gather(*requests)
        assert (sim.stats.in_flight, sim.stats.max_in_flight) == (0, 5)
        extra = [asyncio.ensure_future(client.get("/odata/")) for _ in range(2)]
        await settle(lambda: clock.sleepers == 2)
        sim.stats.reset()  # the peak starts again from what is running
        assert (sim.stats.in_flight, sim.stats.max_in_flight) == (2, 2)
        clock.advance(1.0)
        await asyncio.gather(*extra)
        assert (await client.get("/admin/stats")).json()["max_in_flight"] == 2
    assert sim.stats.in_flight == 0


class Broken(Simulator):
    def routes(self) -> list[BaseRoute]:
        async def boom(request: Request) -> Response:
            raise RuntimeError("the vendor's bug")

        return [Route("/boom", boom)]


async def test_in_flight_comes_back_to_zero_on_every_way_out(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=RateLimit(1, per=60))
    async with client_for(sim) as client:
        assert (await client.get("/odata/")).status_code == 200
        assert (await client.get("/odata/")).status_code == 429
        assert sim.stats.in_flight == 0
        sim.rate_limit = None
        sim.faults = FaultProfile(reset_rate=1.0)
        with pytest.raises(InjectedReset):
            await client.get("/odata/")
        assert sim.stats.in_flight == 0
        sim.faults = FaultProfile(hang_rate=1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/odata/"), timeout=0.05)
        assert sim.stats.in_flight == 0
        sim.faults = FaultProfile(slow_rate=1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/odata/"), timeout=0.05)
        assert sim.stats.in_flight == 0
    assert sim.stats.max_in_flight == 1
    broken = Broken(clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=broken.app)) as client:
        with pytest.raises(RuntimeError, match="the vendor's bug"):
            await client.get("http://vendor.test/boom")
    assert (broken.stats.requests, broken.stats.in_flight) == (1, 0)
