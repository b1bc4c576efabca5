"""``/v1/connections/.../health``: each tenant sees its own connections' breakers, and another
tenant's connection name is a 404 like a name that does not exist."""

from __future__ import annotations

from cadastre.directory import ConnectionSpec
from cadastre.gateway import BreakerPolicy
from cadastre.gateway.breaker import CallResult

from .conftest import A, B, World, assert_problem


async def add(world: World, tenant: str, name: str) -> None:
    await world.hub.connections.put(tenant, ConnectionSpec(
        name=name, system="mls", connector="mls/reso",
        config={"base_url": "https://api.mls.example/odata"},
    ))  # fmt: skip


async def test_a_connection_without_calls_reads_closed(world: World) -> None:
    await add(world, A, "austin")
    answer = await world.get("/v1/connections/austin/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "connection": "austin", "connector": "mls/reso",
        "breaker": {"state": "closed", "calls": 0, "failure_rate": 0.0, "slow_call_rate": 0.0,
                    "retry_in_seconds": None, "times_opened": 0},
    }  # fmt: skip


async def test_an_open_breaker_shows_for_its_tenant_only(world: World) -> None:
    await add(world, A, "austin")
    await add(world, B, "austin")  # the same name in another tenant
    policy = BreakerPolicy(minimum_calls=2, window_size=2)
    breaker = world.hub.controls.breaker(A, "austin", "bridge", policy)
    for _ in range(2):
        breaker.acquire().record(CallResult.FAILURE, 0.1)
    mine = (await world.get("/v1/connections/austin/health")).json()["breaker"]
    assert mine["state"] == "open"
    assert mine["failure_rate"] == 1.0
    assert mine["retry_in_seconds"] == 30.0
    theirs = (await world.get("/v1/connections/austin/health", tenant=B)).json()["breaker"]
    assert theirs["state"] == "closed"
    listed = (await world.get("/v1/connections/health")).json()
    assert [(c["connection"], c["breaker"]["state"]) for c in listed] == [("austin", "open")]


async def test_another_tenants_connection_is_not_found(world: World) -> None:
    await add(world, B, "houston")
    assert_problem(await world.get("/v1/connections/houston/health"), 404)
    assert_problem(await world.get("/v1/connections/nowhere/health"), 404)
    assert (await world.get("/v1/connections/health")).json() == []


async def test_health_needs_a_key(world: World) -> None:
    assert_problem(await world.client.get("/v1/connections/health"), 401)
