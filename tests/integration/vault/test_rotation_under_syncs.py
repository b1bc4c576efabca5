"""The master key rotated while syncs run (issue 5, item 6): three connections sync in a loop
against RESO simulators whose tokens live one second, so every sync decrypts its client secret to
refresh; meanwhile ``cadastre vault rotate-master --new-key`` runs twice as its own process on the
same data directory. No sync fails, refreshes happen during the rotations, and afterwards no secret
is under an old key."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from cadastre.bootstrap import bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.simulators import ResoSimulator, serve

TENANT = "acme"
LOOPBACK = ("127.0.0.0/8", "::1")
MAPPING = "mapping: test-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
CADASTRE = Path(sys.executable).with_name("cadastre")


async def rotate_master(data_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    process = await asyncio.create_subprocess_exec(
        str(CADASTRE), "vault", "rotate-master", "--new-key", cwd=data_dir.parent,
        env=env | {"CADASTRE_DATA_DIR": str(data_dir), "CADASTRE_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.timeout(180)
async def test_rotating_the_master_key_while_syncs_run_fails_no_sync(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "test-mls.yaml").write_text(MAPPING)
    settings = Settings(data_dir=data_dir, mappings_dir=tmp_path / "mappings",
                        gateway_allow_hosts=LOOPBACK)  # fmt: skip
    hub = await bootstrap(settings, configure_logs=False)
    sims = [ResoSimulator(records=40, seed=n, rate_limit=None, token_ttl=1.0) for n in range(3)]
    outcomes: list[str] = []
    refreshes = {"before": 0, "during": 0}
    phase = "before"
    try:
        await hub.tenants.create(TENANT, "Acme")
        async with contextlib.AsyncExitStack() as stack:
            for n, sim in enumerate(sims):
                running = await stack.enter_async_context(serve(sim.app))
                await hub.vault.add(
                    TENANT,
                    f"mls-{n}",
                    "oauth2_client_credentials",
                    {"client_id": "demo-client", "client_secret": "demo-secret"},
                )
                await hub.connections.put(TENANT, ConnectionSpec(
                    name=f"mls-{n}", system="mls", connector="mls/reso", credential=f"mls-{n}",
                    config={"base_url": f"{running.url}/odata",
                            "token_url": f"{running.url}/oauth/token", "mapping": "test-mls",
                            "gateway": {"allow_hosts": list(LOOPBACK)}},
                ))  # fmt: skip
            stop = asyncio.Event()

            async def keep_syncing(name: str) -> None:
                while not stop.is_set():
                    before = hub.tokens.refreshes
                    try:
                        await hub.sync(TENANT, name)
                        outcomes.append("ok")
                    except Exception as error:  # noqa: BLE001 - every failed sync is the finding
                        outcomes.append(repr(error))
                    refreshes[phase] += hub.tokens.refreshes - before
                    await asyncio.sleep(0.05)

            syncing = [asyncio.create_task(keep_syncing(f"mls-{n}")) for n in range(3)]
            await asyncio.sleep(1.5)
            phase = "during"
            said = [await rotate_master(data_dir), await rotate_master(data_dir)]
            phase = "after"
            refreshes["after"] = 0
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*syncing)
        current = hub.vault.keys.current_key_id()
        left = await hub.vault.left_under_old([TENANT], current)
    finally:
        await hub.close()
    failures = [o for o in outcomes if o != "ok"]
    assert failures == []
    assert len(outcomes) > 20
    assert refreshes["during"] > 0  # secrets were decrypted while their keys were re-wrapped
    assert all("0 left under other keys" in s for s in said), said
    assert left == 0
