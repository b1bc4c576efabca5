"""Faults that only show on a real socket: a lost response (the write is applied, the client reads
nothing at all), SLOW and HANG given up by the client, and the in-flight peak under a client-side
concurrency cap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from cadastre.simulators import FaultProfile, ResoSimulator, serve
from cadastre.testing import FakeClock

from .test_loopback import token_headers

KEY = "NEW00000001"
RECORD = {"ListingKey": KEY, "ListPrice": 425000, "StandardStatus": "Active"}


async def eventually(condition: object, seconds: float = 2.0) -> bool:
    assert callable(condition)
    for _ in range(round(seconds / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_a_retried_write_with_a_key_is_applied_once() -> None:
    sim = ResoSimulator(records=3, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        headers = {**await token_headers(client), "Idempotency-Key": "retry-me"}
        sim.faults = FaultProfile(lost_response_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post("/odata/Property", json=RECORD, headers=headers)
        assert sim.stats.applied_by_listing == {KEY: 1}  # processed, though nobody heard back
        sim.faults = FaultProfile()
        retried = await client.post("/odata/Property", json=RECORD, headers=headers)
        assert retried.status_code == 201
        assert retried.headers["idempotent-replayed"] == "true"
        assert retried.json()["ListingKey"] == KEY
        assert (await client.get("/odata/Property", headers=headers)).status_code == 200
    assert sim.stats.applied_by_listing == {KEY: 1}
    assert sim.stats.faults_injected == {"lost_response": 1}


async def test_a_retried_write_without_a_key_is_applied_twice() -> None:
    sim = ResoSimulator(records=3, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        headers = await token_headers(client)
        sim.faults = FaultProfile(lost_response_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/odata/Property", json=RECORD, headers=headers)
        sim.faults = FaultProfile()
        assert (await client.post("/odata/Property", json=RECORD, headers=headers)).is_success
    assert sim.stats.applied_by_listing == {KEY: 2}


async def test_a_lost_read_sends_no_status_at_all() -> None:
    sim = ResoSimulator(records=3, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        headers = await token_headers(client)
        sim.faults = FaultProfile(lost_response_rate=1.0, seed=2)
        for _ in range(3):  # the server stays healthy for the next connection
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.get("/odata/Property", headers=headers)
    assert sim.stats.in_flight == 0


async def test_slow_is_abandoned_when_the_client_gives_up() -> None:
    clock = FakeClock(start=datetime(2026, 11, 2, tzinfo=UTC))  # nobody advances it
    sim = ResoSimulator(records=3, clock=clock, rate_limit=None)
    async with (
        serve(sim.app) as running,
        httpx.AsyncClient(base_url=running.url, timeout=httpx.Timeout(0.3, connect=10)) as client,
    ):
        headers = await token_headers(client)
        sim.faults = FaultProfile(slow_rate=1.0, slow_seconds=30)
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/odata/Property", json=RECORD, headers=headers)
        assert await eventually(lambda: sim.stats.in_flight == 0)
        assert clock.sleepers == 0  # the wait ended with the connection
    assert sim.stats.applied_by_listing == {}  # the vendor never got to the write
    assert sim.stats.faults_injected == {"slow": 1}


async def test_a_write_abandoned_mid_way_is_rolled_back_and_frees_its_key() -> None:
    clock = FakeClock(start=datetime(2026, 11, 2, tzinfo=UTC))  # nobody advances it
    sim = ResoSimulator(records=3, clock=clock, rate_limit=None, write_latency=10)
    async with (
        serve(sim.app) as running,
        httpx.AsyncClient(base_url=running.url, timeout=httpx.Timeout(0.3, connect=10)) as client,
    ):
        headers = {**await token_headers(client), "Idempotency-Key": "gave-up"}
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/odata/Property", json=RECORD, headers=headers)
        assert await eventually(lambda: sim.stats.in_flight == 0)
        assert KEY not in sim.records
        sim.write_latency = 0
        retried = await client.post("/odata/Property", json=RECORD, headers=headers)
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers  # the key was never used up
    assert sim.stats.applied_by_listing == {KEY: 1}


async def test_in_flight_comes_back_when_a_hung_client_gives_up() -> None:
    sim = ResoSimulator(records=3, rate_limit=None, faults=FaultProfile(hang_rate=1.0))
    async with (
        serve(sim.app) as running,
        # a short read timeout (the hang), a generous connect one: on a loaded machine a loopback
        # connect once took longer than 0.2 s (a --full run on two shared cores)
        httpx.AsyncClient(base_url=running.url, timeout=httpx.Timeout(0.2, connect=10)) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/odata/")
        assert await eventually(lambda: sim.stats.in_flight == 0)


async def test_max_in_flight_shows_the_client_cap() -> None:
    sim = ResoSimulator(records=3, rate_limit=None, faults=FaultProfile(latency=0.2))
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        gate = asyncio.Semaphore(3)

        async def capped() -> int:
            async with gate:
                return (await client.get("/odata/")).status_code

        assert await asyncio.gather(*(capped() for _ in range(12))) == [200] * 12
        assert sim.stats.max_in_flight == 3
        sim.stats.reset()
        assert await asyncio.gather(*(client.get("/odata/") for _ in range(8)))
        assert sim.stats.max_in_flight == 8  # uncapped, all eight overlap in the latency
    assert sim.stats.in_flight == 0
