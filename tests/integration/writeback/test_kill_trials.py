"""RELIABILITY.md promise 11: each vendor write takes effect once, across crashes.

Per trial: the platform asks for a create; a worker in a process of its own sends it to a loopback
vendor and is SIGKILLed at ``writeback.acked`` (the vendor has answered, nothing is committed);
a fresh worker then recovers the target. The vendor's create count for that logical write must be
1: with an idempotency key (the vendor replays the first answer), with a natural key (it upserts),
and with neither (the recovery reads back and never resends; the target ends ``applied`` through
the read-back, or ``indeterminate``). 3 trials per kind, 100 with ``--full``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.directory.connections import ConnectionSpec
from cadastre.ports import WritebackMode, WriteOperation, WriteState
from tests.integration.writeback.http_target import NAME, install
from tests.integration.writeback.vendor import vendor_app

PROJECT = Path(__file__).resolve().parents[3]
TENANT = "acme"
LEASE = 0.5
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
async def vendor() -> AsyncIterator[str]:
    async with serve_app(vendor_app()) as running:
        yield running.url


def _env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(PROJECT), "CADASTRE_DATA_DIR": str(data_dir),
        "CADASTRE_MAPPINGS_DIR": str(PROJECT / "mappings"),
        "CADASTRE_GATEWAY_ALLOW_HOSTS": '["127.0.0.0/8"]',
        "CADASTRE_WRITEBACK_LEASE_SECONDS": str(LEASE), "CADASTRE_FAILPOINTS": "writeback.acked",
    }  # fmt: skip


async def _killed_worker(data_dir: Path) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.writeback.worker_process", env=_env(data_dir),
        cwd=PROJECT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == -9, err.decode()[-2000:]
    return process.returncode


async def _hub(data_dir: Path, vendor: str) -> Hub:
    install()
    hub = await bootstrap(
        Settings(data_dir=data_dir, mappings_dir=PROJECT / "mappings",
                 gateway_allow_hosts=LOOPBACK, writeback_lease_seconds=LEASE),
        configure_logs=False,
    )  # fmt: skip
    await hub.tenants.create(TENANT, "Acme")
    for mode in ("key", "natural", "none"):
        await hub.connections.put(TENANT, ConnectionSpec(
            name=f"crm-{mode}", system="crm", connector=NAME,
            config={"base_url": f"{vendor}/{mode}", "mapping": "mls/reso",
                    "gateway": {"allow_hosts": list(LOOPBACK)}},
        ))  # fmt: skip
    return hub


@pytest.mark.timeout(1800)  # 100 trials of ~5 s under --full; the reduced run takes ~15 s
@pytest.mark.parametrize("mode", ["key", "natural", "none"])
async def test_one_create_per_logical_write_across_a_kill(
    tmp_path: Path, vendor: str, mode: str, full_trials: bool
) -> None:
    trials = 100 if full_trials else 3
    hub = await _hub(tmp_path / "var", vendor)
    outcomes: list[WriteState] = []
    try:
        for mine in ("key", "natural", "none"):  # only this kind's connection may be chosen
            if mine != mode:
                await hub.writeback.set_mode(TENANT, f"crm-{mine}", WritebackMode.OFF, by="test")
        await _only(hub, mode)
        for i in range(trials):
            planned = await hub.writeback.submit(
                TENANT, "Contact", None, {"Email": f"t{i}@{mode}.example", "FirstName": "T"},
                operation=WriteOperation.CREATE, actor="test",
            )  # fmt: skip
            await _killed_worker(tmp_path / "var")
            (target,) = (await hub.writeback.get(TENANT, planned.write.id))[1]
            assert target.state is WriteState.SENDING  # killed after the ack, before the commit
            await asyncio.sleep(LEASE + 0.1)  # the dead worker's claim runs out
            await hub.writeback.worker().run_once()
            (target,) = (await hub.writeback.get(TENANT, planned.write.id))[1]
            outcomes.append(target.state)
            async with httpx.AsyncClient() as client:
                stats = (await client.get(f"{vendor}/admin/stats")).json()
            assert stats["creates"].get(target.key) == 1, (mode, i, stats, target)
        allowed = {WriteState.APPLIED} if mode != "none" else {
            WriteState.APPLIED, WriteState.INDETERMINATE
        }  # fmt: skip
        assert set(outcomes) <= allowed, outcomes
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"{vendor}/admin/stats")).json()
        assert stats["objects"] == trials  # never a second create
    finally:
        await hub.close()


async def _only(hub: Hub, mode: str) -> None:
    """Mark this kind's connection the one that takes creates (three crm connections exist)."""
    connection = await hub.connections.get(TENANT, f"crm-{mode}")
    await hub.connections.put(TENANT, ConnectionSpec(
        name=connection.name, system=connection.system, connector=connection.connector,
        config={**connection.config, "writeback_default": True},
    ))  # fmt: skip
