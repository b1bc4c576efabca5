"""A connection's ``gateway.allow_hosts`` is a tenant's to write, so it may only narrow what the
operator allowed (``CADASTRE_GATEWAY_ALLOW_HOSTS``): beyond that, the connection does not open."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.bootstrap import bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.errors import AddressRefused, ConfigurationError
from cadastre.testing import FakeClock


async def hub_with(tmp_path: Path, ceiling: tuple[str, ...]):
    settings = Settings(data_dir=tmp_path, mappings_dir=tmp_path, gateway_allow_hosts=ceiling)
    hub = await bootstrap(settings, clock=FakeClock(autojump=True), configure_logs=False)
    await hub.tenants.create("acme", "Acme")
    return hub


async def add(hub, allow: list[str]) -> None:
    await hub.connections.put("acme", ConnectionSpec(
        name="mls", system="mls", connector="mls/reso",
        config={"base_url": "http://127.0.0.1:9/odata", "gateway": {"allow_hosts": allow}},
    ))  # fmt: skip


async def test_a_tenant_cannot_allow_what_the_operator_did_not(tmp_path: Path) -> None:
    hub = await hub_with(tmp_path, ("127.0.0.0/8",))
    try:
        await add(hub, ["10.0.0.0/8", "127.0.0.1"])
        with pytest.raises(ConfigurationError, match=r"asks to reach 10\.0\.0\.0/8, which the op"):
            await hub.open_source("acme", "mls")
    finally:
        await hub.close()


async def test_without_an_allow_list_loopback_is_refused_before_any_connection(
    tmp_path: Path,
) -> None:
    hub = await hub_with(tmp_path, ("127.0.0.0/8",))
    try:
        await add(hub, [])
        with pytest.raises(AddressRefused, match="loopback"):
            await hub.sync("acme", "mls")
    finally:
        await hub.close()


async def test_a_bad_operator_entry_stops_the_hub_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'10\.0\.0\.1/8': host bits set"):
        await hub_with(tmp_path, ("10.0.0.1/8",))
