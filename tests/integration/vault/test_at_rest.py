"""Secrets at rest (RELIABILITY.md #19), on SQLite and PostgreSQL:

- canary secrets, and the tokens a real refresh stored, appear nowhere in the raw SQLite file
  (with its WAL) nor in a ``pg_dump`` of the database;
- two rows' ciphertexts swapped in the database do not open;
- ``rotate_master`` while 64 readers decrypt without pause: 0 failed reads, and afterwards 0
  secrets under the old key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cadastre.clock import SystemClock
from cadastre.errors import DecryptionFailed
from cadastre.ports import Store
from cadastre.store import open_store
from cadastre.vault import FileMasterKeys, Vault
from tests.conftest import service_missing
from tests.integration.vault.conftest import fresh_postgres

TENANT = "acme"
CANARY = f"canary-{secrets.token_hex(8)}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        return
    with fresh_postgres() as url:
        yield url


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    opened = await open_store(database, clock=SystemClock(), migrate=True)
    await opened.create_tenant(TENANT, "Acme")
    yield opened
    await opened.close()


def vault(store: Store, tmp_path: Path) -> Vault:
    return Vault(store, FileMasterKeys(tmp_path / "vault.keys", create=True), SystemClock())


def raw_bytes(database: str, tmp_path: Path) -> bytes:
    """Everything the database holds, as an attacker with the files (or a dump) sees it."""
    url = make_url(database)
    if url.drivername.startswith("sqlite"):
        path = Path(str(url.database))
        return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        service_missing("postgres", "pg_dump is not installed (Debian: postgresql-client)")
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "PGUSER": url.username or "postgres"}  # fmt: skip
    dump = subprocess.run(
        [pg_dump, "--data-only", str(url.database)], env=env, capture_output=True, check=True
    )
    return dump.stdout


async def test_no_secret_is_in_the_database_in_plaintext(
    store: Store, database: str, tmp_path: Path
) -> None:
    v = vault(store, tmp_path)
    await v.add(TENANT, "mls", "oauth2_client_credentials",
                {"client_id": f"id-{CANARY}", "client_secret": CANARY})  # fmt: skip
    await v.add(TENANT, "pms", "api_key", {"api_key": f"key-{CANARY}"})
    stored = await v.stored(TENANT, "mls")
    await v.update(stored, secrets={"access_token": f"token-{CANARY}"})  # as a refresh stores it
    opened = await v.open(TENANT, "mls", actor="test", purpose="test")
    assert opened.field("client_secret").reveal() == CANARY  # it is there, sealed
    raw = raw_bytes(database, tmp_path)
    assert b"client_secret" in raw  # the scan sees the tables (field names are not secret)
    assert CANARY.encode() not in raw
    assert CANARY.encode("utf-16-le") not in raw


async def test_ciphertexts_swapped_between_rows_do_not_open(store: Store, tmp_path: Path) -> None:
    v = vault(store, tmp_path)
    await v.add(TENANT, "a", "api_key", {"api_key": "key-of-a-aaaaaaaaaaaa"})
    await v.add(TENANT, "b", "api_key", {"api_key": "key-of-b-bbbbbbbbbbbb"})
    engine = store.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        rows = {r.credential: r for r in await conn.execute(text(
            "SELECT credential, wrapped_key, ciphertext FROM credential_secrets"))}  # fmt: skip
        for mine, theirs in (("a", "b"), ("b", "a")):
            await conn.execute(
                text("UPDATE credential_secrets SET wrapped_key = :w, ciphertext = :c "
                     "WHERE credential = :name"),
                {"w": rows[theirs].wrapped_key, "c": rows[theirs].ciphertext, "name": mine},
            )  # fmt: skip
    for name in ("a", "b"):
        with pytest.raises(DecryptionFailed, match="does not open"):
            await v.open(TENANT, name, actor="test", purpose="test")


@pytest.mark.timeout(180)
async def test_rotating_the_master_key_under_64_readers_fails_no_read(
    store: Store, database: str, tmp_path: Path, full_trials: bool
) -> None:
    v = vault(store, tmp_path)
    count = 200 if full_trials else 60
    for n in range(count):
        await v.add(TENANT, f"c{n}", "api_key", {"api_key": f"key-{n:04d}-{CANARY}"})
    old = v.keys.current_key_id()
    rotating = True
    reads, failures = 0, []

    async def reader(seed: int) -> None:
        nonlocal reads
        n = seed
        while rotating:
            n = (n + 7) % count
            try:
                opened = await v.open(TENANT, f"c{n}", actor="reader", purpose="test")
                assert opened.field("api_key").reveal() == f"key-{n:04d}-{CANARY}"
                reads += 1
            except Exception as error:  # noqa: BLE001 - every failed read is the finding
                failures.append(repr(error))

    readers = [asyncio.create_task(reader(i)) for i in range(64)]
    await asyncio.sleep(0.2)
    # Another process (the CLI, its own connections) adds the new key to the shared key file
    # and re-wraps.
    cli_store = await open_store(database, clock=SystemClock(), migrate=False)
    rotator = Vault(cli_store, FileMasterKeys(tmp_path / "vault.keys"), SystemClock())
    new = rotator.keys.add_key()  # type: ignore[attr-defined]
    before = reads
    try:
        report = await rotator.rotate_master([TENANT], batch=16)
        during = reads - before
        left = await rotator.left_under_old([TENANT], new)
    finally:
        await cli_store.close()
    await asyncio.sleep(0.2)
    rotating = False
    await asyncio.gather(*readers)
    logging.getLogger(__name__).info(
        "rotate-master: %d secrets re-wrapped; %d reads in all, %d during the re-wrap, %d failed",
        report.rewrapped,
        reads,
        during,
        len(failures),
    )  # shown with --log-cli-level=INFO
    assert failures == []
    assert during > 0  # the readers were reading while the keys were re-wrapped
    assert report.key_id == new != old
    assert report.rewrapped == count
    assert report.left == 0
    assert left == 0
    # Once every row is under the new key, the old one can go; every secret still opens.
    rotator.keys.retire(keep=())  # type: ignore[attr-defined]
    for n in range(0, count, 13):
        opened = await v.open(TENANT, f"c{n}", actor="test", purpose="test")
        assert opened.field("api_key").reveal() == f"key-{n:04d}-{CANARY}"
