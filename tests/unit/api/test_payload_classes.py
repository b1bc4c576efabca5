"""Payload classes: an IDX or VOW key never reads a field the MLS that wrote it withholds from
that class, on /v1/listings and /reso/odata alike; a full key reads everything.

Two MLSs with different rules (one ``exclude``s, one ``include``s), one listing with fields from
both, and three keys of one tenant (full, vow, idx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.directory.connections import ConnectionSpec
from cadastre.ports import ApiKeyScope, PayloadClass
from cadastre.testing import FakeClock

TENANT = "acme"
URI = "http://api.test/reso/odata"
MLS_A = """mapping: mls-a
version: 1
extends: mls/reso
payloads:
  IDX: {exclude: [PrivateRemarks, ListAgentEmail, ShowingInstructions]}
  VOW: {exclude: [PrivateRemarks]}
"""
MLS_B = """mapping: mls-b
version: 1
extends: mls/reso
payloads:
  IDX: {include: [City, ListPrice, StandardStatus]}
"""


@dataclass
class Classes:
    hub: Hub
    client: httpx.AsyncClient
    keys: dict[PayloadClass, str]

    async def get(self, payload: PayloadClass, path: str, **params: Any) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.keys[payload]}"}
        return await self.client.get(path, params=params, headers=auth)

    async def write(
        self, connection: str, key: str, canonical_id: str | None = None, **fields: Any
    ) -> str:
        result = await self.hub.engine.apply(
            Change(
                tenant=TENANT, entity="Listing", fields={"ListingKey": key, **fields},
                canonical_id=canonical_id,
                origin=Origin(system="mls", connection=connection, external_id=key),
            )
        )  # fmt: skip
        return result.canonical_id


@pytest.fixture
async def classes(tmp_path: Path) -> AsyncIterator[Classes]:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "mls-a.yaml").write_text(MLS_A)
    (mappings / "mls-b.yaml").write_text(MLS_B)
    settings = Settings(data_dir=tmp_path, mappings_dir=mappings)
    hub = await bootstrap(settings, clock=FakeClock(), configure_logs=False)
    await hub.tenants.create(TENANT, "Acme")
    for name in ("mls-a", "mls-b"):
        spec = ConnectionSpec(
            name=name,
            system="mls",
            connector="mls/reso",
            config={"base_url": "https://mls.invalid/odata", "mapping": name},
        )
        await hub.connections.put(TENANT, spec)  # fmt: skip
    keys = {
        payload: (await hub.keys.create(TENANT, ApiKeyScope.READ, payload_class=payload)).plaintext
        for payload in PayloadClass
    }
    transport = httpx.ASGITransport(create_app(hub), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield Classes(hub, client, keys)
    await hub.close()


FIELDS_A = {"City": "Austin", "ListPrice": "350000", "PrivateRemarks": "lockbox 1234",
            "ListAgentEmail": "a@example.com", "ShowingInstructions": "call first",
            "StandardStatus": "Active"}  # fmt: skip


async def test_v1_listings_leave_out_what_each_class_may_not_read(classes: Classes) -> None:
    a = await classes.write("mls-a", "A1", **FIELDS_A)
    # one listing, written by two MLSs: B's rules govern the fields B wrote last
    ab = await classes.write("mls-a", "AB", City="Austin", PrivateRemarks="A", BedroomsTotal=3)
    await classes.write("mls-b", "AB", ab, PublicRemarks="from B", BedroomsTotal=4)

    full = (await classes.get(PayloadClass.FULL, f"/v1/listings/{a}")).json()
    assert full["PrivateRemarks"] == "lockbox 1234"
    vow = (await classes.get(PayloadClass.VOW, f"/v1/listings/{a}")).json()
    assert "PrivateRemarks" not in vow
    assert vow["ListAgentEmail"] == "a@example.com"
    idx = (await classes.get(PayloadClass.IDX, f"/v1/listings/{a}")).json()
    for withheld in ("PrivateRemarks", "ListAgentEmail", "ShowingInstructions"):
        assert withheld not in idx
        assert withheld not in idx["field_confidence"]  # its score would say it exists
    assert idx["City"] == "Austin"
    assert idx["field_confidence"]["City"] == 1.0

    mixed = (await classes.get(PayloadClass.IDX, f"/v1/listings/{ab}")).json()
    assert mixed["ListingKey"] == "AB"  # a record's key is never withheld
    assert mixed["City"] == "Austin"  # written by A, which serves City to IDX
    assert "PrivateRemarks" not in mixed  # A withholds it
    assert "PublicRemarks" not in mixed  # B serves IDX only City, ListPrice, StandardStatus
    assert "BedroomsTotal" not in mixed  # B wrote it last
    assert (await classes.get(PayloadClass.VOW, f"/v1/listings/{ab}")).json()["BedroomsTotal"] == 4

    page = (await classes.get(PayloadClass.IDX, "/v1/listings")).json()["data"]
    assert {item["ListingKey"] for item in page} == {"A1", "AB"}
    assert not any("PrivateRemarks" in item for item in page)
    page = (await classes.get(PayloadClass.FULL, "/v1/listings")).json()["data"]
    assert all("PrivateRemarks" in item for item in page)


async def test_reso_odata_serves_withheld_fields_as_absent(classes: Classes) -> None:
    await classes.write("mls-a", "A1", **FIELDS_A)
    await classes.write("mls-a", "A2", **{**FIELDS_A, "PrivateRemarks": "other"})

    async def odata(payload: PayloadClass, path: str, **params: Any) -> dict[str, Any]:
        response = await classes.get(payload, f"{URI}/{path}", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    one = await odata(PayloadClass.IDX, "Property('A1')")
    assert one["PrivateRemarks"] is None
    assert one["City"] == "Austin"
    assert (await odata(PayloadClass.FULL, "Property('A1')"))["PrivateRemarks"] == "lockbox 1234"

    # $filter reads a withheld field as null: it cannot probe the value
    probe = {"$filter": "PrivateRemarks eq 'lockbox 1234'", "$select": "ListingKey"}
    assert (await odata(PayloadClass.IDX, "Property", **probe))["value"] == []
    assert (await odata(PayloadClass.VOW, "Property", **probe))["value"] == []
    assert [r["ListingKey"] for r in (await odata(PayloadClass.FULL, "Property", **probe))[
        "value"]] == ["A1"]  # fmt: skip
    nulls = {"$filter": "PrivateRemarks eq null", "$select": "ListingKey,PrivateRemarks"}
    rows = (await odata(PayloadClass.IDX, "Property", **nulls))["value"]
    assert sorted(rows, key=lambda row: row["ListingKey"]) == [
        {"ListingKey": "A1", "PrivateRemarks": None}, {"ListingKey": "A2", "PrivateRemarks": None}
    ]  # fmt: skip
    # $orderby on it orders by null: the answer says nothing of the values
    by_remarks = {"$orderby": "PrivateRemarks desc", "$select": "PrivateRemarks"}
    ordered = await odata(PayloadClass.IDX, "Property", **by_remarks)
    assert ordered["value"] == [{"PrivateRemarks": None}, {"PrivateRemarks": None}]
    # the VOW key reads what IDX may not
    vow = await odata(PayloadClass.VOW, "Property('A1')", **{"$select": "ListAgentEmail"})
    assert vow["ListAgentEmail"] == "a@example.com"


async def test_a_connection_whose_mapping_cannot_be_read_fails_closed(classes: Classes) -> None:
    await classes.write("mls-a", "A1", **FIELDS_A)
    (classes.hub.settings.mappings_dir / "mls-a.yaml").write_text("mapping: [not, valid")
    idx = (await classes.get(PayloadClass.IDX, f"{URI}/Property('A1')")).json()
    assert idx["ListingKey"] == "A1"
    assert idx["City"] is None  # every field the connection wrote is withheld
    full = (await classes.get(PayloadClass.FULL, f"{URI}/Property('A1')")).json()
    assert full["City"] == "Austin"  # a full key needs no mapping


async def test_keys_carry_their_class(classes: Classes) -> None:
    listed = {k.payload_class for k in await classes.hub.keys.all(TENANT)}
    assert listed == set(PayloadClass)
    key = next(k for k in await classes.hub.keys.all(TENANT) if k.payload_class is PayloadClass.IDX)
    rotated = await classes.hub.keys.rotate(TENANT, key.key_id)
    assert rotated.record.payload_class is PayloadClass.IDX


async def test_v1_filters_cannot_probe_a_withheld_field(classes: Classes) -> None:
    """mls-b serves IDX only City, ListPrice and StandardStatus: an IDX key filtering on
    ModificationTimestamp must not learn B's value by which listings come back."""
    stamp = "2026-01-01T00:00:00Z"
    await classes.write("mls-b", "B1", City="Austin", ModificationTimestamp=stamp)
    await classes.write("mls-a", "A1", City="Austin", ModificationTimestamp=stamp)

    async def keys(payload: PayloadClass, **params: Any) -> list[str]:
        response = await classes.get(payload, "/v1/listings", **params)
        assert response.status_code == 200, response.text
        return sorted(item["ListingKey"] for item in response.json()["data"])

    before, after = "2025-12-31T00:00:00Z", "2026-01-02T00:00:00Z"
    assert await keys(PayloadClass.FULL, modified_since=before) == ["A1", "B1"]
    assert await keys(PayloadClass.FULL, modified_since=after) == []
    # B1's timestamp is withheld from IDX: it reads as absent, so it matches no bound
    assert await keys(PayloadClass.IDX, modified_since=before) == ["A1"]
    assert await keys(PayloadClass.IDX, modified_since=after) == []
    # a filter on what IDX may read still finds both
    assert await keys(PayloadClass.IDX, city="austin") == ["A1", "B1"]
    # paging past listings dropped this way neither loses nor repeats one
    for n in range(5):
        await classes.write("mls-b", f"B{n + 2}", ModificationTimestamp=stamp)
    await classes.write("mls-a", "A2", ModificationTimestamp=stamp)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"modified_since": before, "limit": 1}
        if cursor:
            params["cursor"] = cursor
        body = (await classes.get(PayloadClass.IDX, "/v1/listings", **params)).json()
        seen += [item["ListingKey"] for item in body["data"]]
        if not (cursor := body["next_cursor"]):
            break
    assert sorted(seen) == ["A1", "A2"]
