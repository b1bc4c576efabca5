"""The API over real HTTP: uvicorn on loopback in this event loop, a SQLite hub behind it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.errors import ConfigurationError
from cadastre.ports import ApiKeyScope
from cadastre.testing import FakeClock


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await bootstrap(Settings(data_dir=tmp_path), clock=FakeClock(), configure_logs=False)
    await hub.tenants.create("acme", "Acme")
    yield hub
    await hub.close()


async def add_listing(hub: Hub, key: str, **fields: str) -> str:
    result = await hub.engine.apply(
        Change(
            tenant="acme", entity="Listing", fields={"ListingKey": key, **fields},
            origin=Origin(system="mls", connection="austin-mls", external_id=key),
        )
    )  # fmt: skip
    return result.canonical_id


async def test_list_get_and_304_over_the_wire(hub: Hub) -> None:
    key = (await hub.keys.create("acme", ApiKeyScope.READ)).plaintext
    ids = [await add_listing(hub, f"L{i}", City="Austin", ListPrice=str(100000 * (i + 1)))
           for i in range(3)]  # fmt: skip
    async with (
        serve_app(create_app(hub)) as running,
        httpx.AsyncClient(base_url=running.url, headers={"Authorization": f"Bearer {key}"}) as c,
    ):
        assert running.url.startswith("http://127.0.0.1:")
        query: dict[str, str | int] = {"limit": 2, "min_price": "100000", "city": "AUSTIN"}
        first = await c.get("/v1/listings", params=query)
        assert first.status_code == 200
        page = first.json()
        assert len(page["data"]) == 2
        rest = await c.get("/v1/listings", params={**query, "cursor": page["next_cursor"]})
        assert rest.json()["next_cursor"] is None
        listed = [item["id"] for item in page["data"] + rest.json()["data"]]
        assert listed == sorted(ids)

        one = await c.get(f"/v1/listings/{ids[0]}")
        assert one.status_code == 200
        assert one.json()["ListPrice"] == "100000"
        etag = one.headers["etag"]
        cached = await c.get(f"/v1/listings/{ids[0]}", headers={"If-None-Match": etag})
        assert (cached.status_code, cached.content) == (304, b"")
        assert cached.headers["etag"] == etag

        async with httpx.AsyncClient(base_url=running.url) as stranger:
            anonymous = await stranger.get("/v1/listings")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert "server" not in anonymous.headers


async def test_serve_app_picks_a_free_port_and_stops_on_leaving(hub: Hub) -> None:
    async with serve_app(create_app(hub), port=0) as running:
        port = int(running.url.rsplit(":", 1)[1])
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{running.url}/healthz")).json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_port_in_use_is_a_configuration_error(hub: Hub) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with serve_app(create_app(hub), port=port):
                pass


async def test_sigint_stops_a_server_that_handles_signals(hub: Hub) -> None:
    async with serve_app(create_app(hub), handle_signals=True) as running:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(running.wait(), timeout=10)
