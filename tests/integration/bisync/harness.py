"""The bi-directional sync world (RELIABILITY.md promise 23, issue 8 item 9): the HubSpot
simulator (CRM) and the Buildium simulator (PMS), each in real HTTP on loopback, a hub on SQLite
with a connection to each (signed webhooks pushed by the simulators to the hub's ``POST
/webhooks/{tenant}/{connection}``, plus polling), the write-back worker, the identity link
between the CRM contact and the PMS resident (one person), and the outbox relay with its bus
consumers (identity, write-back propagation), all on one fake clock.

Nothing runs in the background: every step is taken by the test, in the order it chooses, so a
run is deterministic. The simulators hold their webhooks (``hold``) and the harness delivers,
duplicates, reorders or drops them one by one through the simulators' own signed pushes.

``Bench`` is the long-lived part (clock, simulators, servers, a template of the hub's data
folder: tenant, credentials, connections, the person synced from both sides and linked);
``Bench.world()`` gives a fresh ``World`` in a few tens of milliseconds: a copy of the template
and the simulators restored to their snapshot, so a property test runs hundreds of examples
against the same servers.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cadastre import failpoints
from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.ports import (
    ApiKeyScope,
    ConflictResolution,
    ConflictState,
    WriteState,
    WriteTarget,
)
from cadastre.simulators import serve
from cadastre.simulators.buildium import BuildiumSimulator
from cadastre.simulators.buildium import WebhookSettings as BuildiumHooks
from cadastre.simulators.buildium.webhooks import WebhookEmitter as BuildiumEmitter
from cadastre.simulators.hubspot import HubSpotSimulator
from cadastre.simulators.hubspot import WebhookSettings as HubSpotHooks
from cadastre.simulators.hubspot.webhooks import WebhookEmitter as HubSpotEmitter
from cadastre.sync.identity_consumer import IdentityConsumer
from cadastre.testing import FakeClock

TENANT = "acme"
CRM, PMS = "crm", "pms"  # connection names (systems crm and pms)
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8", "::1")
CRM_SECRET = "demo-secret"  # the HubSpot app's client secret: it signs HubSpot's webhooks
PMS_HOOK_SECRET = "buildium-hook-secret"
PMS_KEY_META = {"header": "x-buildium-client-secret", "id_header": "x-buildium-client-id",
                "id": "demo-client-id"}  # fmt: skip
MERGE = {"Content-Type": "application/merge-patch+json"}
LEASE_SECONDS = 300.0  # the write-back claim (CADASTRE_WRITEBACK_LEASE_SECONDS' default)

# The person's fields both vendors hold (Contact in the CRM, Resident in the PMS).
SHARED = ("FirstName", "LastName", "Email", "MobilePhone", "HomePhone")
HUBSPOT = {"FirstName": "firstname", "LastName": "lastname", "Email": "email",
           "MobilePhone": "mobilephone", "HomePhone": "phone"}  # fmt: skip
BUILDIUM_PHONES = {"MobilePhone": "Cell", "HomePhone": "Home"}
PERSON = {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com",
          "MobilePhone": "5125550101", "HomePhone": "5125550102"}  # fmt: skip
PMS_TENANT_ID = 1  # a seeded Buildium tenant on an active lease: the person


class Crash(Exception):
    """The in-process stand-in for kill -9 at a failpoint: nothing after it runs."""


class NotQuiet(AssertionError):
    """Writes did not stop within the bound of ``quiesce``."""


# ------------------------------------------------------------------------------ webhooks


class Pushes:
    """One simulator's held webhooks, delivered one by one by the simulator itself (signed, over
    HTTP, to the hub). HubSpot batches the events made close together into one request: each
    action's events are formed into their own request at once (``settle``)."""

    def __init__(self, emitter: BuildiumEmitter | HubSpotEmitter) -> None:
        self.emitter = emitter
        self.delivered = 0
        self.dropped = 0
        self.duplicated = 0

    def settle(self) -> None:
        if isinstance(self.emitter, HubSpotEmitter):
            self.emitter._form()

    @property
    def waiting(self) -> list[Any]:
        self.settle()
        return list(self.emitter._held)

    async def _send(self, item: Any) -> None:
        emitter = self.emitter
        rest = [h for h in emitter._held if h is not item]
        emitter._held = [item]
        emitter.release()
        await emitter.drain()
        emitter._held = [*rest, *emitter._held]  # anything held meanwhile stays held
        self.delivered += 1

    async def deliver(self, index: int = 0) -> bool:
        """Deliver the ``index``-th waiting webhook (0: the oldest); False when none waits."""
        waiting = self.waiting
        if not waiting:
            return False
        await self._send(waiting[index % len(waiting)])
        return True

    async def duplicate(self, index: int = 0) -> bool:
        """Deliver it twice (the vendor's at-least-once delivery)."""
        waiting = self.waiting
        if not waiting:
            return False
        item = waiting[index % len(waiting)]
        await self._send(item)
        self.emitter._held.insert(0, item)
        await self._send(item)
        self.duplicated += 1
        return True

    def drop(self, index: int = 0) -> bool:
        """Lose it (only polling can bring its change now)."""
        waiting = self.waiting
        if not waiting:
            return False
        item = waiting[index % len(waiting)]
        self.emitter._held.remove(item)
        item.outcome = "dropped"
        self.dropped += 1
        return True

    async def deliver_all(self) -> int:
        sent = 0
        while await self.deliver(0):
            sent += 1
        return sent


# ------------------------------------------------------------------------------ observation


@dataclass(frozen=True)
class Observed:
    crm: dict[str, Any]  # the shared fields as the CRM simulator holds the contact
    pms: dict[str, Any]  # ... as the PMS simulator holds the tenant
    contact: dict[str, Any]  # ... as the hub holds the Contact
    resident: dict[str, Any]  # ... and the Resident
    crm_patches: int  # PATCHes of the contact at HubSpot
    crm_creates: int
    pms_puts: int  # PUTs of the tenant at Buildium
    pms_creates: int
    open_conflicts: list[Any]
    resolved_conflicts: list[Any]
    targets: list[WriteTarget]
    audit_ok: bool
    audit_actions: Counter[str]

    def agreed(self) -> bool:
        return self.crm == self.pms == self.contact == self.resident

    def sides(self) -> dict[str, dict[str, Any]]:
        return {"crm": self.crm, "pms": self.pms, "contact": self.contact,
                "resident": self.resident}  # fmt: skip

    def states(self) -> Counter[str]:
        return Counter(t.state.value for t in self.targets)


def _blank(value: Any) -> Any:
    return None if value in ("", None) else value


def crm_fields(sim: HubSpotSimulator, contact: str) -> dict[str, Any]:
    props = sim.objects.resolve("contacts", contact).properties
    return {name: _blank(props.get(prop)) for name, prop in HUBSPOT.items()}


def pms_fields(sim: BuildiumSimulator, tenant: int) -> dict[str, Any]:
    served = sim.get("tenants", tenant)
    assert served is not None
    phones = {p["Type"]: p["Number"] for p in served.get("PhoneNumbers") or []}
    out = {name: _blank(served.get(name)) for name in ("FirstName", "LastName", "Email")}
    out.update({name: _blank(phones.get(kind)) for name, kind in BUILDIUM_PHONES.items()})
    return out


# ------------------------------------------------------------------------------ the world


@dataclass
class World:
    bench: Bench
    hub: Hub
    api: httpx.AsyncClient
    key: str  # a write key of the tenant
    contact_id: str  # canonical ids
    resident_id: str
    contact_ext: str  # vendor ids
    resident_ext: int
    crm_hooks: Pushes
    pms_hooks: Pushes
    identity: IdentityConsumer
    log: list[str] = field(default_factory=list)
    conflicts_resolved: int = 0
    crashes: int = 0
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def clock(self) -> FakeClock:
        return self.bench.clock

    @property
    def crm(self) -> HubSpotSimulator:
        return self.bench.crm

    @property
    def pms(self) -> BuildiumSimulator:
        return self.bench.pms

    def hooks(self, system: str) -> Pushes:
        return self.crm_hooks if system == CRM else self.pms_hooks

    # -------------------------------------------------------------------- edits

    def edit_crm(self, name: str, value: str, *, source: str | None = None) -> None:
        """A person edits the contact in HubSpot's UI (or, with ``source``, a peer integration
        does): a webhook is held."""
        self.log.append(f"crm ui {name}={value!r}")
        changes = {HUBSPOT[name]: value}
        if source is None:
            self.crm.ui_edit("contacts", self.contact_ext, changes)
        else:
            self.crm.ui_edit(
                "contacts", self.contact_ext, changes, source=source, source_id="peer-automation"
            )
        self.crm_hooks.settle()

    def edit_pms(self, name: str, value: str) -> None:
        """A person edits the tenant in Buildium's UI: a webhook is held."""
        self.log.append(f"pms ui {name}={value!r}")
        if name in BUILDIUM_PHONES:
            kind = BUILDIUM_PHONES[name]
            served = self.pms.get("tenants", self.resident_ext)
            assert served is not None
            phones = [p for p in served["PhoneNumbers"] if p["Type"] != kind]
            phones.append({"Number": value, "Type": kind})
            self.pms.ui_edit("tenants", self.resident_ext, {"PhoneNumbers": phones})
        else:
            self.pms.ui_edit("tenants", self.resident_ext, {name: value})

    async def edit_platform(self, entity: str, patch: dict[str, Any]) -> str:
        """``PATCH /v1/contacts/{id}`` or ``/v1/residents/{id}``; the write id (202)."""
        self.log.append(f"platform {entity} {patch}")
        path = (f"/v1/contacts/{self.contact_id}" if entity == "Contact"
                else f"/v1/residents/{self.resident_id}")  # fmt: skip
        headers = {**MERGE, "Authorization": f"Bearer {self.key}"}
        answer = await self.api.patch(path, json=patch, headers=headers)
        assert answer.status_code == 202, answer.text
        write_id: str = answer.json()["write_id"]
        return write_id

    # -------------------------------------------------------------------- steps

    async def normalise(self) -> int:
        """The webhook normaliser over both connections' stored webhooks."""
        normaliser = self.hub.webhooks_in.normaliser(self.hub)
        return await normaliser.drain(TENANT, CRM) + await normaliser.drain(TENANT, PMS)

    async def relay(self) -> int:
        """The outbox relay: publishes every pending event; the bus consumers (identity,
        write-back propagation) have handled each batch when it returns."""
        total = 0
        while moved := await self.hub.relay.relay_tenant(TENANT):
            total += moved
        return total

    async def deliver(self, system: str, index: int = 0) -> bool:
        self.log.append(f"deliver {system}[{index}]")
        return await self.hooks(system).deliver(index)

    async def duplicate(self, system: str, index: int = 0) -> bool:
        self.log.append(f"duplicate {system}[{index}]")
        return await self.hooks(system).duplicate(index)

    def drop(self, system: str, index: int = 0) -> bool:
        self.log.append(f"drop {system}[{index}]")
        return self.hooks(system).drop(index)

    async def poll(self, system: str) -> None:
        """An incremental sync of the connection (what heals a dropped webhook)."""
        self.log.append(f"poll {system}")
        await self.hub.sync(TENANT, system)

    async def run_writeback(self) -> bool:
        """One pass of a write-back worker; True when it claimed something."""
        self.log.append("writeback")
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            due = await uow.writes.any_due()
        await self.hub.writeback.worker().run_once()
        return due

    async def crash_writeback(self, point: str = "writeback.acked") -> bool:
        """A worker killed at ``point`` (``writeback.sent``: before the vendor call;
        ``writeback.acked``: the vendor answered, nothing committed): its target stays
        ``sending`` under a claim nobody will release. True when it crashed."""
        self.log.append(f"crash at {point}")
        with crash_at(point) as fired, contextlib.suppress(Crash):
            await self.hub.writeback.worker().run_once()
        self.crashes += fired[0]
        return bool(fired[0])

    def advance(self, seconds: float) -> None:
        self.log.append(f"advance {seconds:g}")
        self.clock.advance(seconds)

    async def resolve_conflicts(self, rule: ConflictResolution) -> int:
        """Resolve every open conflict by ``rule`` (as ``cadastre conflicts resolve`` does)."""
        done = 0
        for conflict in await self.conflicts(ConflictState.OPEN):
            await self.hub.engine.resolve_conflict(TENANT, conflict.id, rule, actor="bisync-test")
            done += 1
        self.conflicts_resolved += done
        return done

    # -------------------------------------------------------------------- reading

    async def conflicts(self, state: ConflictState | None = None) -> list[Any]:
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            return list(await uow.conflicts.find(state=state, limit=1000))

    async def targets(self, state: WriteState | None = None) -> list[WriteTarget]:
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            return await uow.writes.find_targets(state=state, limit=10_000)

    async def record(self, entity: str) -> dict[str, Any]:
        record_id = self.contact_id if entity == "Contact" else self.resident_id
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            found = await uow.records.get(entity, record_id)
        assert found is not None
        return {name: _blank(found.data.get(name)) for name in SHARED}

    async def observe(self) -> Observed:
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            audit = await uow.audit.verify()
            actions = Counter([e.action async for e in uow.audit.entries()])
        return Observed(
            crm=crm_fields(self.crm, self.contact_ext),
            pms=pms_fields(self.pms, self.resident_ext),
            contact=await self.record("Contact"),
            resident=await self.record("Resident"),
            crm_patches=self.crm.stats.patches[self.contact_ext],
            crm_creates=self.crm.stats.creates,
            pms_puts=self.pms.stats.puts[f"tenants/{self.resident_ext}"],
            pms_creates=sum(self.pms.stats.api_creates.values()),
            open_conflicts=await self.conflicts(ConflictState.OPEN),
            resolved_conflicts=await self.conflicts(ConflictState.RESOLVED),
            targets=await self.targets(),
            audit_ok=audit.ok,
            audit_actions=actions,
        )

    def echoes_dropped(self, connection: str) -> float:
        """``cadastre_writeback_echoes_dropped_total`` of the connection."""
        counter = self.hub.metrics.counter("cadastre_writeback_echoes_dropped_total")
        value: float = counter.labels(TENANT, connection)._value.get()
        return value

    def vendor_writes(self) -> int:
        return (
            self.crm.stats.api_writes
            + sum(self.pms.stats.api_updates.values())
            + sum(self.pms.stats.api_creates.values())
        )

    async def busy(self) -> list[str]:
        """What is still in flight: held webhooks, unnormalised webhooks, unpublished events,
        write targets not settled."""
        found = [f"{s} webhooks held" for s in (CRM, PMS) if self.hooks(s).waiting]
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            if await uow.outbox.pending(limit=1):
                found.append("outbox events")
            if await uow.webhooks_in.due_connections(now=self.clock.now()):
                found.append("webhooks to normalise")
            open_targets = [t for t in await uow.writes.find_targets(limit=10_000)
                            if t.state in (WriteState.PENDING, WriteState.SENDING)]  # fmt: skip
        if open_targets:
            found.append(f"{len(open_targets)} write targets open")
        return found

    # -------------------------------------------------------------------- quiesce

    async def settle_once(self) -> None:
        """Deliver every held webhook, normalise, relay, and run write-back until nothing is
        due (a target left ``sending`` by a crash is recovered once its claim runs out; a
        retry's backoff is waited out on the clock)."""
        for system in (CRM, PMS):
            await self.hooks(system).deliver_all()
        await self.normalise()
        await self.relay()
        for _ in range(50):
            if await self.run_writeback():
                await self.relay()
                continue
            waiting = [t for t in await self.targets()
                       if t.state in (WriteState.PENDING, WriteState.SENDING)]  # fmt: skip
            if not waiting:
                break
            self.advance(_wait_for(waiting, self.clock.now()))
        else:  # pragma: no cover - a worker that never finishes is a failure of its own
            raise NotQuiet("write-back still busy after 50 passes")
        await self.relay()

    async def quiesce(
        self, *, rounds: int = 8, rule: ConflictResolution = ConflictResolution.KEEP_CURRENT
    ) -> int:
        """Deliver everything, poll both connections, run the workers until nothing is pending,
        resolve open conflicts by ``rule``, and repeat until a whole round changes nothing at
        either vendor and leaves nothing in flight; how many rounds that took. ``NotQuiet``
        when writes have not stopped within ``rounds`` (termination)."""
        for done in range(1, rounds + 1):
            before = (self.vendor_writes(), self.crm.stats.ui_edits, self.pms.stats.ui_changes)
            self.advance(5)  # a poll after the storm, not at its very instant
            await self.settle_once()
            for system in (CRM, PMS):
                await self.poll(system)
            await self.settle_once()
            resolved = await self.resolve_conflicts(rule)
            await self.settle_once()
            after = (self.vendor_writes(), self.crm.stats.ui_edits, self.pms.stats.ui_changes)
            if before == after and not resolved and not await self.busy():
                return done
        raise NotQuiet(f"writes did not stop within {rounds} rounds: {await self.busy()}; "
                       f"{self.log[-20:]}")  # fmt: skip

    async def aclose(self) -> None:
        await self._stack.aclose()


def _wait_for(targets: list[WriteTarget], now: datetime) -> float:
    """Seconds until the first of ``targets`` can be taken again (a claim running out, a
    backoff ending), at least one."""
    waits = []
    for target in targets:
        if target.state is WriteState.SENDING:
            waits.append(LEASE_SECONDS + 1)
        elif target.next_attempt_at is not None:
            waits.append((target.next_attempt_at - now).total_seconds() + 0.5)
    return max(1.0, min(waits, default=1.0))


@contextlib.contextmanager
def crash_at(point: str) -> Iterator[list[int]]:
    """``failpoints.reach(point)`` raises ``Crash`` once (the in-process kill -9)."""
    fired = [0]
    real = failpoints.reach

    def reach(name: str) -> None:
        if name == point and not fired[0]:
            fired[0] = 1
            raise Crash(point)
        real(name)

    failpoints.reach = reach
    try:
        yield fired
    finally:
        failpoints.reach = real


# ------------------------------------------------------------------------------ the bench


class _Switch:
    """An ASGI app forwarding to the current world's hub API (one server for every world)."""

    def __init__(self) -> None:
        self.app: Callable[..., Awaitable[None]] | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None, "no world is open"
        await self.app(scope, receive, send)


@dataclass
class Bench:
    clock: FakeClock
    crm: HubSpotSimulator
    pms: BuildiumSimulator
    crm_url: str
    pms_url: str
    api_url: str
    folder: Path
    switch: _Switch
    ids: dict[str, Any] = field(default_factory=dict)
    _snapshot: tuple[Any, Any] | None = None
    _worlds: Iterator[int] = field(default_factory=itertools.count)

    @property
    def template(self) -> Path:
        return self.folder / "template"

    def settings(self, data_dir: Path) -> Settings:
        return Settings(data_dir=data_dir, mappings_dir=self.folder / "mappings",
                        gateway_allow_hosts=LOOPBACK, log_level="WARNING")  # fmt: skip

    def restore(self) -> None:
        """The simulators as they were when the template was made: the records, no counts, no
        webhooks waiting, no failures armed."""
        assert self._snapshot is not None
        book, objects = self._snapshot
        self.pms.book = copy.deepcopy(book)
        self.crm.objects = copy.deepcopy(objects)
        self.pms.stats.reset()
        self.crm.stats.reset()
        self.pms.fail_writes(0)
        self.crm.fail_writes(0)
        self.pms.webhooks = BuildiumEmitter(self.pms.clock)
        self.crm.webhooks = HubSpotEmitter(self.crm.offset_clock, portal_id=self.crm.portal_id,
                                           app_id=self.crm.app_id)  # fmt: skip
        self.pms.webhooks.configure(BuildiumHooks(
            url=f"{self.api_url}/webhooks/{TENANT}/{PMS}", secret=PMS_HOOK_SECRET, hold=True,
        ))  # fmt: skip
        self.crm.webhooks.configure(HubSpotHooks(
            url=f"{self.api_url}/webhooks/{TENANT}/{CRM}", secret=CRM_SECRET, hold=True,
        ))  # fmt: skip

    async def make_template(self) -> None:
        """Tenant, credentials, both connections, the person in both vendors (equal values),
        synced in full, linked, every event relayed; then the simulators' snapshot."""
        (self.folder / "mappings").mkdir(exist_ok=True)
        pms_row = self.pms.book.tenants[PMS_TENANT_ID]
        phones = [{"Number": PERSON["MobilePhone"], "Type": "Cell"},
                  {"Number": PERSON["HomePhone"], "Type": "Home"}]  # fmt: skip
        pms_row.data.update({"FirstName": PERSON["FirstName"], "LastName": PERSON["LastName"],
                             "Email": PERSON["Email"], "PhoneNumbers": phones})  # fmt: skip
        pms_row.updated = self.clock.now()
        made = self.crm.ui_create("contacts", {HUBSPOT[n]: v for n, v in PERSON.items()})
        self.ids["contact_ext"] = made.id
        self.clock.advance(600)  # later polls' look-back does not reach the set-up
        hub = await bootstrap(self.settings(self.template), clock=self.clock,
                              configure_logs=False)  # fmt: skip
        try:
            await hub.tenants.create(TENANT, "Acme")
            grant = self.crm.oauth.grant()
            await hub.vault.add(TENANT, "crm-app", "oauth2_authorization_code",
                                {"client_id": "demo-client", "client_secret": CRM_SECRET,
                                 "refresh_token": str(grant["refresh_token"])},
                                {"auth_method": "client_secret_post",
                                 "refresh_token_reuse": "allowed"})  # fmt: skip
            await hub.vault.add(TENANT, "crm-hooks", "webhook_secret", {"secret": CRM_SECRET})
            await hub.vault.add(TENANT, "pms-key", "api_key", {"api_key": "demo-client-secret"},
                                PMS_KEY_META)  # fmt: skip
            await hub.vault.add(TENANT, "pms-hooks", "webhook_secret",
                                {"secret": PMS_HOOK_SECRET})  # fmt: skip
            self.ids["key"] = (await hub.keys.create(TENANT, ApiKeyScope.WRITE)).plaintext
            gateway = {"allow_hosts": list(LOOPBACK)}
            await hub.connections.put(TENANT, ConnectionSpec(
                name=CRM, system="crm", connector="crm/hubspot", credential="crm-app",
                config={"base_url": self.crm_url, "gateway": gateway, "streams": ["contacts"],
                        "search_interval": 0,
                        "webhook": {"scheme": "hubspot_v3", "credential": "crm-hooks",
                                    "url": f"{self.api_url}/webhooks/{TENANT}/{CRM}"}},
            ))  # fmt: skip
            await hub.connections.put(TENANT, ConnectionSpec(
                name=PMS, system="pms", connector="pms/buildium", credential="pms-key",
                config={"base_url": self.pms_url, "gateway": gateway,
                        "webhook": {"scheme": "buildium", "credential": "pms-hooks"}},
            ))  # fmt: skip
            await hub.sync(TENANT, CRM)
            await hub.sync(TENANT, PMS)
            async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
                contact = await uow.xref.resolve("crm", CRM, "Contact", made.id)
                resident = await uow.xref.resolve("pms", PMS, "Resident", str(PMS_TENANT_ID))
            assert contact is not None
            assert resident is not None
            self.ids.update(contact_id=contact, resident_id=resident)
            identity = IdentityConsumer(hub.bus, hub.store, hub.engine, hub.identities,
                                        metrics=hub.metrics)  # fmt: skip
            async with identity, hub.writeback.propagator(hub.bus):
                if not await hub.identities.find(TENANT):
                    await hub.identities.link(TENANT, contact, resident, by="bisync-test")
                while await hub.relay.relay_tenant(TENANT):
                    pass
            async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
                assert not await uow.writes.find_targets(limit=1), "the set-up wrote to a vendor"
        finally:
            await hub.close()
        self._snapshot = (copy.deepcopy(self.pms.book), copy.deepcopy(self.crm.objects))

    @contextlib.asynccontextmanager
    async def world(self) -> AsyncIterator[World]:
        """A fresh world: the template's hub copied, the simulators restored."""
        folder = self.folder / f"world-{next(self._worlds)}"
        shutil.copytree(self.template, folder)
        self.restore()
        hub = await bootstrap(self.settings(folder), clock=self.clock, configure_logs=False,
                              migrate=False)  # fmt: skip
        self.switch.app = create_app(hub)
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(hub.close)
            api = await stack.enter_async_context(httpx.AsyncClient(base_url=self.api_url,
                                                                    timeout=30))  # fmt: skip
            identity = await stack.enter_async_context(IdentityConsumer(
                hub.bus, hub.store, hub.engine, hub.identities, metrics=hub.metrics))  # fmt: skip
            await stack.enter_async_context(hub.writeback.propagator(hub.bus))
            world = World(
                bench=self, hub=hub, api=api, key=self.ids["key"],
                contact_id=self.ids["contact_id"], resident_id=self.ids["resident_id"],
                contact_ext=self.ids["contact_ext"], resident_ext=PMS_TENANT_ID,
                crm_hooks=Pushes(self.crm.webhooks), pms_hooks=Pushes(self.pms.webhooks),
                identity=identity, _stack=stack,
            )  # fmt: skip
            yield world
        finally:
            await self.crm.webhooks.stop()
            await self.pms.webhooks.stop()
            await stack.aclose()
            self.switch.app = None
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def open_bench(folder: Path, *, clock: FakeClock | None = None) -> AsyncIterator[Bench]:
    """The simulators and the hub's API server on loopback, and the template made."""
    clock = clock or FakeClock(NOW, autojump=True)
    crm = HubSpotSimulator(clock=clock)
    pms = BuildiumSimulator(units=10, seed=7, clock=clock)
    switch = _Switch()
    async with (
        serve(crm.app) as crm_up,
        serve(pms.app) as pms_up,
        serve_app(switch) as api_up,
    ):
        bench = Bench(clock, crm, pms, crm_up.url, pms_up.url, api_up.url, folder, switch)
        await bench.make_template()
        try:
            yield bench
        finally:
            await crm.webhooks.stop()
            await pms.webhooks.stop()
