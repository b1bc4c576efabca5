"""The simulators over real HTTP on loopback: a token and a full paging pass, faults switched while
the server runs, the vendor rate limit under concurrency, and a prompt shutdown."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from cadastre.simulators import FaultProfile, RateLimit, ResoSimulator, serve


async def token_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_token_and_a_full_paging_pass() -> None:
    sim = ResoSimulator(records=450, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        assert running.url.startswith("http://127.0.0.1:")
        assert running.port > 0
        headers = await token_headers(client)
        params = {"$top": "100", "$orderby": "ModificationTimestamp,ListingKey", "$count": "true"}
        response = await client.get("/odata/Property", params=params, headers=headers)
        body = response.json()
        assert body["@odata.count"] == 450
        keys = [row["ListingKey"] for row in body["value"]]
        pages = 1
        while "@odata.nextLink" in body:
            assert body["@odata.nextLink"].startswith(f"{running.url}/odata/Property?")
            body = (await client.get(body["@odata.nextLink"], headers=headers)).json()
            keys += [row["ListingKey"] for row in body["value"]]
            pages += 1
    assert pages == 5
    assert sorted(keys) == sorted(sim.records)
    assert sim.stats.requests == 1 + pages
    assert sim.stats.tokens_issued == 1


async def test_faults_switched_while_running() -> None:
    sim = ResoSimulator(records=20, rate_limit=None)
    async with (
        serve(sim.app) as running,
        httpx.AsyncClient(base_url=running.url, timeout=httpx.Timeout(0.5, connect=10)) as client,
    ):
        headers = await token_headers(client)
        assert (await client.get("/odata/Property", headers=headers)).status_code == 200

        sim.faults = FaultProfile(hang_rate=1.0)
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/odata/Property", headers=headers)

        switched = await client.post("/admin/faults", json={"reset_rate": 1.0})
        assert switched.status_code == 200  # admin answers while data paths are faulted
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/odata/Property", headers=headers)

        sim.faults = FaultProfile(garbage_rate=1.0)
        garbage = await client.get("/odata/Property", headers=headers)
        assert garbage.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(garbage.content)

        await client.post("/admin/faults", json={"error_rate": 1.0, "seed": 1})
        assert (await client.get("/odata/Property", headers=headers)).status_code in (500, 502, 503)

        await client.post("/admin/faults", json={})
        healthy = await client.get("/odata/Property", headers=headers)
        assert healthy.status_code == 200
        assert len(healthy.json()["value"]) == 20
        stats = (await client.get("/admin/stats")).json()
    assert stats["faults_injected"] == {"hang": 1, "reset": 1, "garbage": 1, "error": 1}


async def test_latency_on_the_real_clock() -> None:
    sim = ResoSimulator(records=5, rate_limit=None, faults=FaultProfile(latency=0.2))
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        started = time.perf_counter()
        headers = await token_headers(client)
        assert (await client.get("/odata/Property", headers=headers)).status_code == 200
    assert time.perf_counter() - started >= 0.4


async def test_shutdown_is_prompt_with_a_request_hanging() -> None:
    sim = ResoSimulator(records=5, rate_limit=None)
    async with httpx.AsyncClient(timeout=30) as client:
        async with serve(sim.app) as running:
            async with httpx.AsyncClient(base_url=running.url) as login:
                headers = await token_headers(login)
            sim.faults = FaultProfile(hang_rate=1.0)
            hung = asyncio.ensure_future(
                client.get(f"{running.url}/odata/Property", headers=headers)
            )
            for _ in range(50):
                await asyncio.sleep(0.01)
                if sim.stats.faults_injected["hang"]:
                    break
            started = time.perf_counter()
        assert time.perf_counter() - started < 1.5
        with pytest.raises(httpx.RemoteProtocolError):
            await hung


async def test_the_vendor_limit_holds_under_concurrency() -> None:
    sim = ResoSimulator(records=5, rate_limit=RateLimit(requests=10, per=60))
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as client:
        headers = await token_headers(client)
        responses = await asyncio.gather(
            *(client.get("/odata/Property", headers=headers) for _ in range(25))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 10 + [429] * 15
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    assert sim.stats.rate_limit_violations == 15


async def test_two_servers_side_by_side() -> None:
    one, two = ResoSimulator(records=3, seed=1), ResoSimulator(records=4, seed=2)
    async with serve(one.app) as first, serve(two.app) as second:
        assert first.port != second.port
        async with httpx.AsyncClient() as client:
            for running, count in ((first, 3), (second, 4)):
                base = running.url
                token = (await client.post(
                    f"{base}/oauth/token",
                    data={"grant_type": "client_credentials", "client_id": "demo-client",
                          "client_secret": "demo-secret"},
                )).json()["access_token"]  # fmt: skip
                response = await client.get(
                    f"{base}/odata/Property", headers={"Authorization": f"Bearer {token}"}
                )
                assert len(response.json()["value"]) == count
