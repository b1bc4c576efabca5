"""A hub on SQLite in a temporary folder, two tenants with a read key each, and an HTTP client
that calls the app in-process (httpx's ASGI transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract import Change, Operation, Origin
from cadastre.ports import ApiKeyScope
from cadastre.testing import FakeClock

A, B = "acme", "globex"


@dataclass
class World:
    hub: Hub
    client: httpx.AsyncClient
    keys: dict[str, str]  # tenant -> plaintext read key

    def auth(self, tenant: str = A) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    async def listing(self, key: str, tenant: str = A, **fields: Any) -> str:
        """Apply an MLS change for listing ``key``; return its canonical id."""
        result = await self.hub.engine.apply(
            Change(
                tenant=tenant, entity="Listing", fields={"ListingKey": key, **fields},
                origin=Origin(system="mls", connection="austin-mls", external_id=key),
            )
        )  # fmt: skip
        return result.canonical_id

    async def delete(self, key: str, tenant: str = A) -> None:
        await self.hub.engine.apply(
            Change(
                tenant=tenant, entity="Listing", operation=Operation.DELETE,
                origin=Origin(system="mls", connection="austin-mls", external_id=key),
            )
        )  # fmt: skip

    async def get(self, path: str, tenant: str = A, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(tenant))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await bootstrap(Settings(data_dir=tmp_path), clock=FakeClock(), configure_logs=False)
    yield hub
    await hub.close()


@pytest.fixture
async def world(hub: Hub) -> AsyncIterator[World]:
    keys = {}
    for tenant in (A, B):
        await hub.tenants.create(tenant, tenant.title())
        keys[tenant] = (await hub.keys.create(tenant, ApiKeyScope.READ)).plaintext
    transport = httpx.ASGITransport(create_app(hub), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield World(hub, client, keys)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    return body
