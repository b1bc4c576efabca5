"""Helpers for the simulator tests: an in-process client and a token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from cadastre.simulators import ResoSimulator
from cadastre.testing import FakeClock

# After the simulated data's epoch, so touched records land after the initial ones.
AFTER_DATA = datetime(2026, 11, 2, tzinfo=UTC)
BASE = "http://mls.test"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=AFTER_DATA)


def client_for(sim: ResoSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=BASE)


async def bearer(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def sim(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=120, seed=7, clock=clock, rate_limit=None)


@pytest.fixture
async def client(sim: ResoSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        yield client
