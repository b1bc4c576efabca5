"""RELIABILITY.md promise 11 against the real vendor simulators: each vendor write takes effect
once, across a kill -9 between the vendor's answer and the local commit.

One vendor per idempotency kind, through its real connector and the gateway, over loopback:

| vendor | write | kind | the simulator's own count (``GET /admin/stats``) |
|---|---|---|---|
| QuickBooks | Payment create | ``key`` (``requestid``) | ``creates_by_requestid[<target key>]`` |
| HubSpot | contact create | ``natural`` (upsert by e-mail) | ``creates_by_id_property[<email>]`` |
| Buildium | tenant create | ``none`` | ``api_creates["tenants"]`` before and after |

Per trial: the platform submits a create (the test's hub); a write-back worker in a process of
its own (``vendor_worker.py``, started warm) takes it and SIGKILLs itself at the failpoint,
``writeback.acked`` (the vendor answered, nothing committed) or, one trial in five,
``writeback.sent`` (committed ``sending``, nothing sent); once its claim has run out, a fresh
worker process recovers the target. Then: ``key`` and ``natural`` end ``applied`` with exactly one
create; ``none`` ends ``applied`` through the read-back (one create) or ``indeterminate`` (at most
one create, an alert raised), never with a second create; an applied target's vendor id is held
by the hub exactly once (one cross-reference, on the written record). The hub runs on SQLite, and
on PostgreSQL for HubSpot. 5 trials per vendor (3 on PostgreSQL), 100 with ``--full``; each
test prints its tally (``-s`` shows it)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.ports import WritebackMode, WriteOperation, WriteState, WriteTarget
from cadastre.simulators import serve
from cadastre.simulators.buildium import BuildiumSimulator
from cadastre.simulators.hubspot import HubSpotSimulator
from cadastre.simulators.quickbooks import DEFAULT_REALM, QuickBooksSimulator
from cadastre.sync.writeback_worker import ALERT_EVENT
from tests.integration.vault.conftest import fresh_postgres

PROJECT = Path(__file__).resolve().parents[3]
TENANT = "acme"
LEASE = 0.75  # seconds a worker's claim lasts: a dead worker's target is recovered after it
LOOPBACK = ("127.0.0.0/8",)
ACKED, SENT = "writeback.acked", "writeback.sent"


@dataclass
class Vendor:
    """One simulator on loopback and the hub's connection to it."""

    name: str
    connection: str
    entity: str
    url: str
    fields: Callable[[int], dict[str, Any]]  # trial -> the create's canonical fields
    creates: Callable[[dict[str, Any], WriteTarget], int]  # stats -> creates of this write
    total: Callable[[dict[str, Any]], int]  # stats -> every API create
    kinds: frozenset[WriteState] = frozenset({WriteState.APPLIED})

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{self.url}/admin/stats")
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats


@dataclass
class Tally:
    trials: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)  # "<failpoint> -> <state>"
    creates: Counter[int] = field(default_factory=Counter)  # creates per logical write

    def line(self, vendor: str, store: str) -> str:
        return (f"promise 11 {vendor}/{store}: trials={self.trials} kills={dict(self.kills)} "
                f"outcomes={dict(self.states)} creates_per_write={dict(self.creates)}")  # fmt: skip


# ------------------------------------------------------------------------------- vendors


async def quickbooks(hub: Hub, stack: AsyncExitStack) -> Vendor:
    sim = QuickBooksSimulator()
    url = (await stack.enter_async_context(serve(sim.app))).url
    granted = sim.oauth.grant("qbo-client", DEFAULT_REALM)
    await hub.vault.add(TENANT, "qbo", "oauth2_authorization_code", {
        "client_id": "qbo-client", "client_secret": "qbo-secret",
        "refresh_token": granted["refresh_token"],
    }, {"refresh_token_reuse": "allowed"})  # fmt: skip
    await hub.connections.put(TENANT, ConnectionSpec(
        name="books", system="accounting", connector="accounting/quickbooks", credential="qbo",
        config={"base_url": url, "realm_id": DEFAULT_REALM,
                "token_url": f"{url}/oauth2/v1/tokens/bearer",
                "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip
    return Vendor(
        "quickbooks", "books", "Payment", url,
        fields=lambda i: {"Amount": 100 + i, "PaidAt": "2026-11-27T09:00:00Z", "Currency": "USD",
                          "LocalFields": {"CustomerRef.value": "6"}},
        creates=lambda stats, target: int(stats["creates_by_requestid"].get(target.key, 0)),
        total=lambda stats: int(stats["creates"]),
    )  # fmt: skip


async def hubspot(hub: Hub, stack: AsyncExitStack) -> Vendor:
    sim = HubSpotSimulator()
    url = (await stack.enter_async_context(serve(sim.app))).url
    stack.push_async_callback(sim.webhooks.stop)
    grant = sim.oauth.grant()
    await hub.vault.add(TENANT, "crm-app", "oauth2_authorization_code", {
        "client_id": "demo-client", "client_secret": "demo-secret",
        "refresh_token": str(grant["refresh_token"]),
    }, {"auth_method": "client_secret_post", "refresh_token_reuse": "allowed"})  # fmt: skip
    await hub.connections.put(TENANT, ConnectionSpec(
        name="crm", system="crm", connector="crm/hubspot", credential="crm-app",
        config={"base_url": url, "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip
    return Vendor(
        "hubspot", "crm", "Contact", url,
        fields=lambda i: {"Email": f"kill{i}@trial.example", "FirstName": "Kill",
                          "LastName": f"Trial{i}"},
        creates=lambda stats, target: int(
            stats["creates_by_id_property"].get(str(target.fields["Email"]).lower(), 0)
        ),
        total=lambda stats: int(stats["creates"]),
    )  # fmt: skip


async def buildium(hub: Hub, stack: AsyncExitStack) -> Vendor:
    sim = BuildiumSimulator(units=10, seed=5)
    url = (await stack.enter_async_context(serve(sim.app))).url
    stack.push_async_callback(sim.webhooks.stop)
    lease = next(i for i in sim.ids("leases") if (sim.get("leases", i) or {}).get("LeaseStatus")
                 == "Active")  # fmt: skip
    await hub.vault.add(TENANT, "pms-key", "api_key", {"api_key": "demo-client-secret"}, {
        "header": "x-buildium-client-secret", "id_header": "x-buildium-client-id",
        "id": "demo-client-id",
    })  # fmt: skip
    await hub.connections.put(TENANT, ConnectionSpec(
        name="pms", system="pms", connector="pms/buildium", credential="pms-key",
        config={"base_url": url, "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip
    seen: dict[str, int] = {}  # write id -> tenant creates before its trial

    def creates(stats: dict[str, Any], target: WriteTarget) -> int:
        now = int(stats["api_creates"].get("tenants", 0))
        return now - seen.setdefault(target.write_id, now)  # first call: before the trial

    return Vendor(
        "buildium", "pms", "Resident", url,
        fields=lambda i: {"LeaseId": str(lease), "FirstName": "Kill", "LastName": f"Trial{i}",
                          "Email": f"kill{i}@trial.example"},
        creates=creates, total=lambda stats: sum(stats["api_creates"].values()),
        kinds=frozenset({WriteState.APPLIED, WriteState.INDETERMINATE}),
    )  # fmt: skip


VENDORS: dict[str, Callable[[Hub, AsyncExitStack], Awaitable[Vendor]]] = {
    "quickbooks": quickbooks, "hubspot": hubspot, "buildium": buildium,
}  # fmt: skip


# ------------------------------------------------------------------------------- the hub


@contextmanager
def store_settings(store: str, data_dir: Path) -> Iterator[dict[str, str]]:
    """The settings (as CADASTRE_* variables) every process of the trial shares."""
    common = {"data_dir": str(data_dir), "mappings_dir": str(PROJECT / "mappings"),
              "writeback_lease_seconds": str(LEASE)}  # fmt: skip
    if store == "sqlite":
        yield common
        return
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with fresh_postgres() as url:
        yield {**common, "database_url": url, "vault_master_key": f"trial:{key}"}


def env_of(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env.update({f"CADASTRE_{k.upper()}": v for k, v in settings.items()})
    env.update(PYTHONPATH=str(PROJECT), CADASTRE_GATEWAY_ALLOW_HOSTS=",".join(LOOPBACK))
    return env


class Worker:
    """A warm worker process (``vendor_worker.py``): started ahead, told to work in its turn."""

    def __init__(self, settings: dict[str, str]) -> None:
        self._started = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.writeback.vendor_worker",
            env=env_of(settings), cwd=PROJECT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ))  # fmt: skip
        self._ready = False

    async def _tell(self, line: str) -> asyncio.subprocess.Process:
        process = await self._started
        assert process.stdin is not None
        assert process.stdout is not None
        if not self._ready:
            await self._expect(process, b"ready\n")
            self._ready = True
        process.stdin.write(line.encode() + b"\n")
        await process.stdin.drain()
        return process

    async def _expect(self, process: asyncio.subprocess.Process, word: bytes) -> None:
        assert process.stdout is not None
        said = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if said != word:
            process.kill()
            _, err = await process.communicate()
            raise AssertionError(f"worker said {said!r}, not {word!r}: {err.decode()[-3000:]}")

    async def work(self) -> None:
        """Work until nothing is due (recovery of what a killed worker left)."""
        await self._expect(await self._tell("work"), b"done\n")

    async def work_and_die(self, failpoint: str) -> None:
        """Arm ``failpoint``, work, and be killed there."""
        process = await self._tell(f"work {failpoint}")
        _, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == -9, (failpoint, process.returncode, err.decode()[-3000:])

    async def close(self) -> None:
        process = await self._started
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def open_hub(settings: dict[str, str]) -> Hub:
    hub = await bootstrap(Settings(**settings, gateway_allow_hosts=LOOPBACK),  # type: ignore[arg-type]
                          configure_logs=False)  # fmt: skip
    await hub.tenants.create(TENANT, "Acme")
    return hub


# ------------------------------------------------------------------------------- the trials


async def target_of(hub: Hub, write_id: str) -> WriteTarget:
    (target,) = (await hub.writeback.get(TENANT, write_id))[1]
    return target


async def check_xref(hub: Hub, vendor: Vendor, target: WriteTarget) -> None:
    """Applied: the vendor's id is held once, by the written record; otherwise not at all."""
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        mine = [r for r in await uow.xref.for_record(vendor.entity, target.canonical_id)
                if r.connection == vendor.connection]  # fmt: skip
        every = await uow.xref.for_connection(vendor.connection, vendor.entity, limit=100_000)
        record = await uow.records.get(vendor.entity, target.canonical_id)
        events = [m.event for m in await uow.outbox.pending(limit=100_000)]
        events += [m.event for m in await uow.outbox.feed(limit=100_000)]
    alerts = {e.id for e in events
              if e.type == ALERT_EVENT and e.data.get("write_id") == target.write_id}  # fmt: skip
    if target.state is WriteState.APPLIED:
        assert target.external_id, target
        assert [r.external_id for r in mine] == [target.external_id], mine
        assert [r.canonical_id for r in every if r.external_id == target.external_id] == [
            target.canonical_id
        ]
        assert record is not None
        assert not record.deleted
        assert not alerts
    else:
        assert mine == [], mine
        assert record is None, record
        assert len(alerts) == 1, alerts  # a person is told


@pytest.mark.timeout(1800)  # 100 trials under --full; the reduced run takes ~20 s
@pytest.mark.parametrize(
    ("vendor_name", "store"),
    [("quickbooks", "sqlite"), ("hubspot", "sqlite"), ("buildium", "sqlite"),
     ("hubspot", "postgres")],
)  # fmt: skip
async def test_one_vendor_create_per_logical_write_across_kill_9(
    tmp_path: Path, vendor_name: str, store: str, full_trials: bool
) -> None:
    trials = 100 if full_trials else (5 if store == "sqlite" else 3)
    tally = Tally()
    with store_settings(store, tmp_path / "var") as settings:
        hub = await open_hub(settings)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(hub.close)
            vendor = await VENDORS[vendor_name](hub, stack)
            await hub.writeback.set_mode(TENANT, vendor.connection, WritebackMode.LIVE, by="test")
            failpoints = [SENT if i % 5 == 4 else ACKED for i in range(trials)]
            worker = Worker(settings)
            try:
                for i, failpoint in enumerate(failpoints):
                    before = await vendor.stats()
                    planned = await hub.writeback.submit(
                        TENANT, vendor.entity, None, vendor.fields(i),
                        operation=WriteOperation.CREATE, actor="kill-trial",
                    )  # fmt: skip
                    (target,) = planned.targets
                    vendor.creates(before, target)  # Buildium: counted from here
                    dying, worker = worker, Worker(settings)  # the next one starts meanwhile
                    await dying.work_and_die(failpoint)
                    tally.kills[failpoint] += 1
                    assert (await target_of(hub, target.write_id)).state is WriteState.SENDING
                    await asyncio.sleep(LEASE + 0.1)  # the dead worker's claim runs out
                    await worker.work()  # a fresh process recovers the target
                    target = await target_of(hub, target.write_id)
                    after = await vendor.stats()
                    created = vendor.creates(after, target)
                    tally.trials += 1
                    tally.states[f"{failpoint} -> {target.state.value}"] += 1
                    tally.creates[created] += 1
                    assert target.state in vendor.kinds, (i, failpoint, target)
                    assert vendor.total(after) - vendor.total(before) == created, (i, after)
                    if target.state is WriteState.APPLIED:
                        assert created == 1, (i, failpoint, target, after)
                    else:
                        assert created <= 1, (i, failpoint, target, after)
                    await check_xref(hub, vendor, target)
            finally:
                await worker.close()
    print(tally.line(vendor_name, store))  # noqa: T201 - the measured numbers
    assert tally.trials == trials
    assert sum(tally.kills.values()) == trials
