"""The write-back API over real HTTP (uvicorn on loopback, SQLite and PostgreSQL): read endpoints
per entity, PATCH/POST answered 202 with the write and its targets, ``GET /v1/writes/{id}``,
422 naming refused fields and bad values, cross-tenant 404, modes, the kill switch, and an
accounting connection that starts in shadow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.directory.connections import ConnectionSpec
from cadastre.ports import ApiKeyScope, ExternalRef, WritebackMode
from cadastre.testing import EPOCH, FakeClock
from cadastre.testing.fake_target import FakeTargetConnector, VendorObject
from tests import target_connector
from tests.integration.vault.conftest import fresh_postgres
from tests.integration.webhooks_out.conftest import master_key

A, B = "acme", "globex"
PROJECT = Path(__file__).resolve().parents[3]
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path, mappings_dir=PROJECT / "mappings")
        return
    with fresh_postgres() as url:
        yield Settings(data_dir=tmp_path, mappings_dir=PROJECT / "mappings",
                       database_url=SecretStr(url), vault_master_key=master_key())  # fmt: skip


@dataclass
class Api:
    hub: Hub
    client: httpx.AsyncClient
    keys: dict[tuple[str, str], str]
    crm: FakeTargetConnector
    ledger: FakeTargetConnector

    async def call(self, method: str, path: str, *, tenant: str = A, scope: str = "write",
                   **kwargs: Any) -> httpx.Response:  # fmt: skip
        headers = {"Authorization": f"Bearer {self.keys[tenant, scope]}",
                   **kwargs.pop("headers", {})}  # fmt: skip
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def patch(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.call("PATCH", path, headers=MERGE, json=body, **kwargs)

    async def work(self) -> None:
        await self.hub.writeback.worker().run_once()


@pytest.fixture
async def api(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    target_connector.register(monkeypatch)
    clock = FakeClock()
    crm = target_connector.vendor("crm", FakeTargetConnector(clock=clock))
    ledger = target_connector.vendor("ledger", FakeTargetConnector(
        system="accounting", clock=clock,
        entities={"LedgerAccount": frozenset({"Name", "AccountNumber", "Active"})},
    ))  # fmt: skip
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    try:
        keys = {}
        for tenant in (A, B):
            await hub.tenants.create(tenant, tenant.title())
            for scope in (ApiKeyScope.READ, ApiKeyScope.WRITE):
                keys[tenant, scope.value] = (await hub.keys.create(tenant, scope)).plaintext
        await hub.connections.put(A, ConnectionSpec(
            name="hubspot", system="crm", connector="test/target",
            config=target_connector.config("crm"),
        ))  # fmt: skip
        await hub.connections.put(A, ConnectionSpec(
            name="qbo", system="accounting", connector="test/ledger",
            config=target_connector.config("ledger"),
        ))  # fmt: skip
        crm.objects["501"] = VendorObject({"Email": "ann@old.example", "FirstName": "Ann"})
        await hub.engine.apply(Change(
            tenant=A, entity="Contact", canonical_id="C1",
            fields={"ContactKey": "501", "Email": "ann@old.example", "FirstName": "Ann"},
            origin=Origin(system="crm", connection="hubspot", external_id="501",
                          source_version="1", source_time=EPOCH),
        ))  # fmt: skip
        async with hub.store.unit_of_work(A) as uow:
            await uow.records.put("LedgerAccount", "LA1", {"Name": "Rent"}, expected_version=0)
            await uow.xref.link(ExternalRef("accounting", "qbo", "LedgerAccount", "Q1", "LA1"))
            await uow.commit()
        async with (
            serve_app(create_app(hub)) as running,
            httpx.AsyncClient(base_url=running.url, timeout=30) as client,
        ):
            yield Api(hub, client, keys, crm, ledger)
    finally:
        await hub.close()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_reads_are_tenant_scoped(api: Api) -> None:
    page = (await api.call("GET", "/v1/contacts", scope="read")).json()
    assert [c["id"] for c in page["data"]] == ["C1"]
    assert page["next_cursor"] is None
    one = await api.call("GET", "/v1/contacts/C1", scope="read")
    assert one.json()["Email"] == "ann@old.example"
    filtered = await api.call("GET", "/v1/contacts", params={"Email": "nobody@x.example"},
                              scope="read")  # fmt: skip
    assert filtered.json()["data"] == []
    problem(await api.call("GET", "/v1/contacts", params={"Shoe": "9"}, scope="read"), 422)
    problem(await api.call("GET", "/v1/contacts/C1", tenant=B, scope="read"), 404)
    assert (await api.call("GET", "/v1/contacts", tenant=B, scope="read")).json()["data"] == []
    assert (await api.call("GET", "/v1/ledger-accounts/LA1", scope="read")).status_code == 200
    for path in ("/v1/units", "/v1/leases", "/v1/residents", "/v1/ledger-entries",
                 "/v1/payments", "/v1/properties"):  # fmt: skip
        assert (await api.call("GET", path, scope="read")).status_code == 200, path


async def test_a_patch_is_accepted_routed_and_applied(api: Api) -> None:
    response = await api.patch("/v1/contacts/C1", {"Email": "ann@new.example", "FirstName": None})
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/writes/{body['write_id']}"
    assert body["targets"] == [{"system": "crm", "connection": "hubspot", "state": "pending",
                                "fields": ["Email", "FirstName"]}]  # fmt: skip
    await api.work()
    write = (await api.call("GET", response.headers["location"], scope="read")).json()
    (target,) = write["targets"]
    assert (target["state"], target["attempts"], target["external_id"]) == ("applied", 1, "501")
    assert api.crm.objects["501"].values == {"Email": "ann@new.example"}
    contact = (await api.call("GET", "/v1/contacts/C1", scope="read")).json()
    assert contact["Email"] == "ann@new.example"
    assert contact.get("FirstName") is None
    problem(await api.call("GET", response.headers["location"], tenant=B, scope="read"), 404)


async def test_refused_fields_and_bad_values_are_named(api: Api) -> None:
    refused = problem(await api.patch("/v1/contacts/C1", {"ContactKey": "9", "Email": "a@b.c"}),
                      422)  # fmt: skip
    assert refused["type"] == "urn:cadastre:problem:field-refused"
    assert [f["field"] for f in refused["fields"]] == ["ContactKey"]
    bad = problem(await api.patch("/v1/contacts/C1", {"Email": "x" * 300, "Shoe": 1}), 422)
    reasons = [(f["field"], f["reason"]) for f in bad["fields"]]  # every problem at once
    assert reasons == [("Email", "invalid_value"), ("Shoe", "unknown_field")]
    mixed = problem(await api.patch("/v1/contacts/C1", {"Shoe": 1, "ContactKey": "9"}), 422)
    assert mixed["type"] == "urn:cadastre:problem:field-refused"
    assert [f["field"] for f in mixed["fields"]] == ["Shoe", "ContactKey"]
    paid = problem(await api.patch("/v1/payments/P1", {"Amount": "5.00"}), 422)
    assert paid["type"] == "urn:cadastre:problem:field-refused"
    assert paid["fields"][0]["field"] == "Amount"
    assert "only when creating" in paid["fields"][0]["detail"]
    bad = problem(await api.patch("/v1/contacts/C1", {"Email": "x" * 300}), 422)
    assert bad["fields"][0]["reason"] == "invalid_value"
    entries = problem(await api.patch("/v1/ledger-entries/E1", {"Amount": 5}), 422)
    assert entries["fields"][0]["field"] == "Amount"
    problem(await api.patch("/v1/contacts/C1", {"Email": "a@b.c"}, tenant=B), 404)
    problem(await api.patch("/v1/contacts/C1", {"Email": "a@b.c"}, scope="read"), 403)
    problem(await api.call("PATCH", "/v1/contacts/C1", content=b"[1]", headers=MERGE), 422)
    problem(await api.call("PATCH", "/v1/contacts/C1", content=b"{",
                           headers={"Content-Type": "text/plain"}), 415)  # fmt: skip
    assert await api.hub.writeback.targets_of(A) == []


async def test_a_create_is_made_by_the_owner(api: Api) -> None:
    response = await api.call("POST", "/v1/contacts", json={"Email": "bo@example.com"})
    assert response.status_code == 202, response.text
    await api.work()
    write = (await api.call("GET", response.headers["location"], scope="read")).json()
    assert write["targets"][0]["state"] == "applied"
    created = (await api.call("GET", f"/v1/contacts/{write['id']}", scope="read")).json()
    assert created["Email"] == "bo@example.com"


async def test_modes_and_the_kill_switch(api: Api) -> None:
    hub = api.hub
    await hub.writeback.set_mode(A, "hubspot", WritebackMode.OFF, by="ops")
    off = (await api.patch("/v1/contacts/C1", {"Email": "a@example.com"})).json()
    await api.work()  # the mode counts when the worker takes the target
    await hub.writeback.set_mode(A, "hubspot", WritebackMode.SHADOW, by="ops")
    shadow = (await api.patch("/v1/contacts/C1", {"Email": "b@example.com"})).json()
    await api.work()
    states = [(await hub.writeback.get(A, w["write_id"]))[1][0].state.value for w in (off, shadow)]
    assert states == ["skipped", "shadowed"]
    assert api.crm.calls == []
    await hub.writeback.set_mode(A, "hubspot", WritebackMode.LIVE, by="ops")
    await hub.writeback.stop(A, "hubspot", by="ops", reason="vendor incident")
    held = (await api.patch("/v1/contacts/C1", {"Email": "c@example.com"})).json()
    await api.work()
    assert (await hub.writeback.get(A, held["write_id"]))[1][0].state.value == "held"
    assert api.crm.calls == []
    assert await hub.writeback.resume(A, "hubspot", by="ops") == 1
    await api.work()
    assert (await hub.writeback.get(A, held["write_id"]))[1][0].state.value == "applied"
    assert api.crm.objects["501"].values["Email"] == "c@example.com"


async def test_accounting_starts_in_shadow(api: Api) -> None:
    response = await api.patch("/v1/ledger-accounts/LA1", {"Name": "Rent income"})
    assert response.status_code == 202, response.text
    await api.work()
    write = (await api.call("GET", response.headers["location"], scope="read")).json()
    assert write["targets"][0]["state"] == "shadowed"
    assert api.ledger.calls == []


async def test_the_echo_window_is_the_setting_from_the_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mappings_dir=PROJECT / "mappings",
                        writeback_echo_days=2)  # fmt: skip
    hub = await bootstrap(settings, clock=FakeClock(), configure_logs=False)
    try:
        # set at bootstrap, not on the first use of Hub.writeback (syncs may run before it)
        assert "writeback" not in vars(hub)
        assert hub.engine.echo_keep is not None
        assert hub.engine.echo_keep.total_seconds() == 2 * 86400
    finally:
        await hub.close()
