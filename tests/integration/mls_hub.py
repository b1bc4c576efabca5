"""What the MLS integration tests share: a hub on SQLite in a temporary folder, with its own mapping
registry, one tenant and the simulators' demo logins in its vault, on a fake clock; and
connections pointed at a RESO simulator on loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.testing import FakeClock

TENANT = "acme"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8", "::1")
PROJECT_MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
# The RESO simulator's default dialect, as a registry file of its own.
TEST_MLS = "mapping: test-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
RESO_LOGIN = (
    "oauth2_client_credentials",
    {"client_id": "demo-client", "client_secret": "demo-secret"},  # the simulator's demo login
)


def fake_clock(start: datetime = NOW) -> FakeClock:
    return FakeClock(start, autojump=True)


@asynccontextmanager
async def open_hub(
    tmp_path: Path,
    clock: FakeClock,
    *,
    mappings: Mapping[str, str] | None = None,
    project_mappings: Sequence[str] = (),
    credentials: Mapping[str, tuple[str, dict[str, str]]] | None = None,
    **settings: Any,
) -> AsyncIterator[Hub]:
    """``mappings``: registry files by name (default: ``test-mls``); ``project_mappings``: files
    copied from the project's ``mappings/``; ``credentials``: name -> (scheme, secrets), by
    default the RESO simulator's demo client as ``mls-client``."""
    folder = tmp_path / "mappings"
    folder.mkdir()
    for name, text in (mappings if mappings is not None else {"test-mls": TEST_MLS}).items():
        (folder / f"{name}.yaml").write_text(text)
    for name in project_mappings:
        shutil.copy(PROJECT_MAPPINGS / f"{name}.yaml", folder / f"{name}.yaml")
    hub = await bootstrap(
        Settings(data_dir=tmp_path, mappings_dir=folder, gateway_allow_hosts=LOOPBACK, **settings),
        clock=clock, configure_logs=False,
    )  # fmt: skip
    try:
        await hub.tenants.create(TENANT, "Acme")
        logins = credentials if credentials is not None else {"mls-client": RESO_LOGIN}
        for name, (scheme, secrets) in logins.items():
            await hub.vault.add(TENANT, name, scheme, secrets)
        yield hub
    finally:
        await hub.close()


async def connect_reso(
    hub: Hub,
    name: str,
    url: str,
    *,
    mapping: str = "test-mls",
    credential: str = "mls-client",
    **config: Any,
) -> None:
    """A RESO connection ``name`` to the simulator at ``url``."""
    await hub.connections.put(TENANT, ConnectionSpec(
        name=name, system="mls", connector="mls/reso", credential=credential,
        config={"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "mapping": mapping, "gateway": {"allow_hosts": list(LOOPBACK)}, **config},
    ))  # fmt: skip
