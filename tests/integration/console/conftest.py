"""What the console tests share: a hub on SQLite in a temporary folder, on a fake clock shared with
two RESO simulators on loopback; tenants ``acme`` and ``globex``, each with a connection synced
once (bad records included, so each has a quarantine), canary credentials, alerts of both kinds
and a conflict; operators of one tenant and of every tenant; browsers as httpx clients that call
the app in-process and keep their own cookies."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.directory import ConnectionSpec
from cadastre.ports import Alert, AlertState, Secret
from cadastre.simulators import FaultProfile, ResoSimulator, serve
from cadastre.testing import EPOCH, FakeClock

A, B = "acme", "globex"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
LOOPBACK = ("127.0.0.0/8", "::1")
MAPPING = "mapping: test-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
FIXED = (
    MAPPING.replace("version: 1", "version: 2") + "enums: {StandardStatus: {Sold-ish: Closed}}\n"
)
# Canary secrets: the pages must never show them (nor the names of the secret fields).
CANARY_ID = "canary-client-4f1d9b"
CANARY_SECRET = "canary-secret-8e2c7a55d0"
CANARY_KEY = "canary-apikey-1b6e93f0c4"
SECRET_FIELD_NAMES = ("client_secret", "access_token", "client_id")
A_CONNECTION, B_CONNECTION = "austin-mls", "globex-hidden-mls"
PAGES = ["/console/", "/console/alerts", "/console/quarantine", "/console/conflicts",
         "/console/mapping", "/console/drift", "/console/credentials"]  # fmt: skip


@dataclass
class World:
    hub: Hub
    clock: FakeClock
    app: Any
    folder: Path  # the mapping registry
    sims: dict[str, ResoSimulator] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # names -> ids made by the setup

    def browser(self, base_url: str = "http://hub.test") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(self.app, raise_app_exceptions=True)
        return httpx.AsyncClient(transport=transport, base_url=base_url)


def found(pattern: str, text: str, group: int = 1) -> str:
    """What ``pattern`` matched in ``text`` (its ``group``); fails the test when nothing did."""
    match = re.search(pattern, text, flags=re.S)
    assert match, pattern
    return match.group(group)


async def alert_state(world: World, tenant: str, id: str) -> AlertState:
    async with world.hub.store.unit_of_work(tenant, read_only=True) as uow:
        alert = await uow.alerts.get(id)
    assert alert is not None, id
    return alert.state


def token_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


async def sign_in(
    browser: httpx.AsyncClient, username: str, password: str = PASSWORD, next: str = "/console/"
) -> httpx.Response:
    form = await browser.get("/console/login")
    assert form.status_code == 200, form.text
    return await browser.post("/console/login", data={
        "csrf": token_of(form.text), "username": username, "password": password, "next": next,
    })  # fmt: skip


@asynccontextmanager
async def signed_in(world: World, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with world.browser() as browser:
        answer = await sign_in(browser, username)
        assert answer.status_code == 303, answer.text
        yield browser


async def csrf(browser: httpx.AsyncClient, path: str = "/console/") -> str:
    page = await browser.get(path)
    assert page.status_code == 200, page.text
    return token_of(page.text)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW, autojump=True)


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "test-mls.yaml").write_text(MAPPING)
    settings = Settings(data_dir=tmp_path, mappings_dir=folder, gateway_allow_hosts=LOOPBACK)
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    yield hub
    await hub.close()


async def _connect(hub: Hub, tenant: str, name: str, url: str, credential: str) -> None:
    await hub.connections.put(tenant, ConnectionSpec(
        name=name, system="mls", connector="mls/reso", credential=credential,
        config={"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "mapping": "test-mls", "page_size": 20,
                "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip


def _alert(id: str, tenant: str, connection: str, *, source: str, **changes: Any) -> Alert:
    made = Alert(
        id=id, tenant=tenant, rule="delivery_dead_lettered", key=f"{connection}-key",
        state=AlertState.FIRING, severity="warning", owner="integrations-oncall",
        vendor="reso", connection=connection, summary=f"deliveries of {connection} dead-lettered",
        changed="3 deliveries exhausted their retries", since=NOW - timedelta(minutes=20),
        action="redrive with `cadastre deliveries redrive`", rollback=None,
        facts={"dead": 3}, occurrences=1, raised_at=NOW - timedelta(minutes=19),
        last_seen_at=NOW - timedelta(minutes=19), resolved_at=None, source=source,
    )  # fmt: skip
    return replace(made, **changes)


async def _conflict(hub: Hub) -> str:
    """One open conflict in tenant A: two systems edited a shared field within the skew."""

    def phone(system: str, value: str, seconds: float, rid: str | None = None) -> Change:
        return Change(
            tenant=A, entity="Resident", canonical_id=rid,
            fields={"MobilePhone": value} if rid else {"MobilePhone": value, "FirstName": "Ann"},
            origin=Origin(system=system, connection=f"{system}-main", external_id=f"{system}-R1",
                          source_time=EPOCH + timedelta(seconds=seconds)),
        )  # fmt: skip

    rid = (await hub.engine.apply(phone("pms", "1", 0))).canonical_id
    await hub.engine.apply(phone("crm", "2", 60, rid))
    await hub.engine.apply(phone("pms", "3", 120, rid))
    await hub.engine.apply(phone("crm", "4", 120.5, rid))
    async with hub.store.unit_of_work(A, read_only=True) as uow:
        (held,) = await uow.conflicts.find()
    return held.id


@pytest.fixture
async def world(hub: Hub, clock: FakeClock, tmp_path: Path) -> World:
    app = create_app(hub)
    made = World(hub, clock, app, tmp_path / "mappings")
    for tenant in (A, B):
        await hub.tenants.create(tenant, tenant.title())
    await hub.operators.add("root", Secret(PASSWORD))
    await hub.operators.add("anna", Secret(PASSWORD), tenant=A)
    await hub.operators.add("gary", Secret(PASSWORD), tenant=B)
    await hub.vault.add(A, "austin-login", "oauth2_client_credentials",
                        {"client_id": CANARY_ID, "client_secret": CANARY_SECRET})  # fmt: skip
    await hub.vault.add(A, "spare-key", "api_key", {"api_key": CANARY_KEY})
    await hub.vault.add(B, "globex-login", "oauth2_client_credentials",
                        {"client_id": "demo-client", "client_secret": "demo-secret"})  # fmt: skip
    # A's MLS answers some listing pages with a 503 (retried): vendor errors to show.
    faults = FaultProfile(error_rate=0.3, seed=3, paths=("/odata/Property",))
    made.sims[A] = ResoSimulator(records=30, seed=1, clock=clock, bad_record_rate=0.1,
                                 client_id=CANARY_ID, client_secret=CANARY_SECRET,
                                 faults=faults)  # fmt: skip
    made.sims[B] = ResoSimulator(records=20, seed=2, clock=clock, bad_record_rate=0.1)
    async with serve(made.sims[A].app) as mls_a, serve(made.sims[B].app) as mls_b:
        await _connect(hub, A, A_CONNECTION, mls_a.url, "austin-login")
        await _connect(hub, B, B_CONNECTION, mls_b.url, "globex-login")
        await hub.sync(A, A_CONNECTION)
        await hub.sync(B, B_CONNECTION)
        # a vendor change of schema, seen by the next sync: a drift event
        clock.advance(60)
        made.sims[A].add_field("ACT_GreenCertified", "Edm.Boolean", True)
        await hub.sync(A, A_CONNECTION)
    await hub.sampler.flush()
    for tenant in (A, B):
        await hub.sampler.sample(tenant)
    await hub.sampler.flush()
    async with hub.store.unit_of_work(A) as uow:
        await uow.alerts.put(_alert("al_a_subsystem", A, A_CONNECTION, source="/cadastre/webhooks"))
        await uow.alerts.put(_alert(
            "al_a_detector", A, A_CONNECTION, source="/cadastre/observe", rule="vendor_error_rate",
            severity="critical", summary=f"reso ({A_CONNECTION}): error rate spike",
            changed="error rate 62% (31 of 50 calls) over 5 min; baseline 0.4%",
            rollback=f"cadastre rollback connection {A_CONNECTION} --tenant {A} --to previous",
        ))  # fmt: skip
        await uow.commit()
    async with hub.store.unit_of_work(B) as uow:
        await uow.alerts.put(_alert("al_b_subsystem", B, B_CONNECTION, source="/cadastre/webhooks"))
        await uow.commit()
    made.ids["conflict"] = await _conflict(hub)
    for tenant in (A, B):
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            items = await uow.quarantine.open_items()
        made.ids[f"quarantine:{tenant}"] = items[0].id
        assert items, f"the setup quarantined nothing in {tenant}"
    return made
