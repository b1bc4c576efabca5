"""What the webhooks-in integration tests share: a hub on a SQLite file or on a PostgreSQL
database of its own (``backend``), on a fake clock, with tenant ``acme``, the test connector
(``tests.webhook_connector``) and connections that receive webhooks:

- ``crm`` (Standard Webhooks, credential ``crm-hooks``),
- ``pms`` (Buildium, credential ``pms-hooks``, a 2 KiB body limit),
- ``plain`` (no ``webhook:`` block: it receives none).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.testing import FakeClock
from tests import webhook_connector
from tests.integration.vault.conftest import fresh_postgres
from tests.webhook_signers import SECRET

TENANT = "acme"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PROJECT = Path(__file__).resolve().parents[3]
CRM_SECRET = SECRET["standard_webhooks"]
PMS_SECRET = SECRET["buildium"]
PMS_LIMIT = 2048


def master_key() -> str:
    return "k1:" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings of a store of the test's own."""
    if request.param == "sqlite":
        yield {"data_dir": tmp_path / "var"}
        return
    with fresh_postgres() as url:
        yield {"data_dir": tmp_path / "var", "database_url": url, "vault_master_key": master_key()}


async def open_hub(clock: FakeClock, **settings: Any) -> Hub:
    hub = await bootstrap(
        Settings(mappings_dir=PROJECT / "mappings", public_url="https://hub.example",
                 **settings),
        clock=clock, configure_logs=False,
    )  # fmt: skip
    await hub.tenants.create(TENANT, "Acme")
    await hub.vault.add(TENANT, "crm-hooks", "webhook_secret", {"secret": CRM_SECRET})
    await hub.vault.add(TENANT, "pms-hooks", "webhook_secret", {"secret": PMS_SECRET})
    connections = {
        "crm": {"scheme": "standard_webhooks", "credential": "crm-hooks"},
        "pms": {"scheme": "buildium", "credential": "pms-hooks", "max_body_bytes": PMS_LIMIT},
        "plain": None,
    }
    for name, block in connections.items():
        config = webhook_connector.config(**({"webhook": block} if block else {}))
        await hub.connections.put(TENANT, ConnectionSpec(
            name=name, system="mls", connector=webhook_connector.NAME, config=config,
        ))  # fmt: skip
    return hub


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def hub(
    backend: dict[str, Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    webhook_connector.register(monkeypatch)
    hub = await open_hub(clock, **backend)
    try:
        yield hub
    finally:
        await hub.close()
