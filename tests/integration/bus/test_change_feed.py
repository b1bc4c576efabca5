"""``GET /v1/changes`` over real HTTP: a SQLite hub with its relay running behind uvicorn on
loopback. Paging with the opaque cursor, tenant isolation, bad cursors, types read as another
major, and a long poll that ends when something is published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.contract.events import EventEnvelope
from cadastre.directory.connections import ConnectionSpec
from cadastre.ports import ApiKeyScope, PayloadClass

A, B = "acme", "globex"


@dataclass
class Feed:
    hub: Hub
    url: str
    keys: dict[str, str]

    async def get(self, tenant: str = A, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers) as client:
            return await client.get("/v1/changes", params=params, timeout=40)

    async def change(self, key: str, price: int, tenant: str = A) -> str:
        fields = {"ListingKey": key, "ListPrice": str(price)}
        origin = Origin(system="mls", connection="austin", external_id=key)
        result = await self.hub.engine.apply(
            Change(tenant=tenant, entity="Listing", fields=fields, origin=origin)
        )
        assert result.event_id is not None
        return result.event_id

    async def published(self, tenant: str, count: int) -> None:
        async with asyncio.timeout(10):
            while True:
                async with self.hub.store.unit_of_work(tenant, read_only=True) as uow:
                    if len(await uow.outbox.feed(limit=1000)) >= count:
                        return
                await asyncio.sleep(0.01)


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    hub = await bootstrap(
        Settings(data_dir=tmp_path, relay_poll_seconds=0.05), configure_logs=False
    )
    keys = {}
    for tenant in (A, B):
        await hub.tenants.create(tenant, tenant.title())
        keys[tenant] = (await hub.keys.create(tenant, ApiKeyScope.READ)).plaintext
    try:
        async with hub.running(), serve_app(create_app(hub)) as running:
            yield Feed(hub, running.url, keys)
    finally:
        await hub.close()


async def test_the_feed_pages_through_a_tenants_events_in_publish_order(feed: Feed) -> None:
    ids = [await feed.change(f"K{i}", 100 + i) for i in range(5)]
    ids.append(await feed.change("K0", 999))  # an update of the first listing
    others = [await feed.change(f"K{i}", 1, tenant=B) for i in range(2)]
    await feed.published(A, 6)
    await feed.published(B, 2)
    seen, after = [], None
    for _ in range(10):
        answer = await feed.get(limit=4, **({"after": after} if after else {}))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["next"]
        after = body["next"]
        if not body["events"]:
            break
        assert len(body["events"]) <= 4
        seen.extend(body["events"])
    assert [e["id"] for e in seen] == ids
    read = JSONFormat().read(None, orjson.dumps(seen[-1]))  # CloudEvents JSON, as served
    assert (read.get_type(), read.get_extension("tenant")) == ("cadastre.listing.updated.v1", A)
    assert {e["type"] for e in seen[:5]} == {"cadastre.listing.created.v1"}
    # the last cursor waits for what comes next, and gets it
    later = await feed.change("K9", 5)
    await feed.published(A, 7)
    assert [e["id"] for e in (await feed.get(after=after)).json()["events"]] == [later]
    # the other tenant sees its own events only
    assert [e["id"] for e in (await feed.get(B)).json()["events"]] == others


async def test_a_cursor_belongs_to_its_tenant_and_a_bad_one_is_a_400(feed: Feed) -> None:
    await feed.change("K1", 1)
    await feed.published(A, 1)
    cursor = (await feed.get(limit=1)).json()["next"]
    stolen = await feed.get(B, after=cursor)
    for answer in (stolen, await feed.get(after="garbage"), await feed.get(after=cursor[:-2])):
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "urn:cadastre:problem:invalid-cursor"
        assert cursor not in answer.text
    assert (await feed.get(B)).json()["events"] == []
    async with httpx.AsyncClient(base_url=feed.url) as anonymous:
        assert (await anonymous.get("/v1/changes")).status_code == 401


async def test_types_keep_some_events_and_read_them_as_the_major_named(feed: Feed) -> None:
    created = await feed.change("K1", 1)
    updated = await feed.change("K1", 2)
    await feed.published(A, 2)
    body = (await feed.get(types="cadastre.listing.updated.v2")).json()
    (event,) = body["events"]
    assert (event["id"], event["type"]) == (updated, "cadastre.listing.updated.v2")
    assert event["data"]["changed"] == {"ListPrice": "2"}
    assert event["data"]["confidence"] == {"record": None, "fields": {}}
    both = await feed.get(types=["cadastre.listing.created.v1", "cadastre.listing.updated.v1"])
    assert [e["id"] for e in both.json()["events"]] == [created, updated]
    # a filtered read moves past what it left out: nothing is read twice
    assert (await feed.get(after=body["next"])).json()["events"] == []
    for bad in (
        "cadastre.listing.upserted.v1",
        "cadastre.listing.updated.v1,cadastre.listing.updated.v2",
    ):
        answer = await feed.get(types=bad)
        assert answer.status_code == 422
        assert "upserted" not in answer.text


async def test_a_long_poll_ends_when_an_event_is_published(feed: Feed) -> None:
    empty = await feed.get(wait=0.2)
    assert empty.json()["events"] == []
    polling = asyncio.create_task(feed.get(after=empty.json()["next"], wait=20))
    await asyncio.sleep(0.3)
    assert not polling.done()
    event_id = await feed.change("K1", 1)
    answer = await asyncio.wait_for(polling, 15)
    assert [e["id"] for e in answer.json()["events"]] == [event_id]
    assert (await feed.get(wait=31)).status_code == 200  # more than 30 s is capped, not refused


MLS = """mapping: mls-a
version: 1
extends: mls/reso
payloads:
  IDX: {exclude: [PrivateRemarks, ShowingInstructions]}
"""


async def test_an_idx_or_vow_key_reads_no_field_its_class_may_not(tmp_path: Path) -> None:
    """As on /v1/listings: the fields the writing MLS withholds from the key's class are left
    out of a change (values, removals and scores), and events other than record changes, which
    may name or carry vendor values, are not served to such a key at all."""
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "mls-a.yaml").write_text(MLS)
    settings = Settings(data_dir=tmp_path, relay_poll_seconds=0.05, mappings_dir=mappings)
    hub = await bootstrap(settings, configure_logs=False)
    await hub.tenants.create(A, "Acme")
    await hub.connections.put(A, ConnectionSpec(
        name="mls-a", system="mls", connector="mls/reso",
        config={"base_url": "https://mls.invalid/odata", "mapping": "mls-a"},
    ))  # fmt: skip
    keys = {
        payload: (await hub.keys.create(A, ApiKeyScope.READ, payload_class=payload)).plaintext
        for payload in PayloadClass
    }
    fields = {"ListingKey": "K1", "City": "Austin", "PrivateRemarks": "lockbox 1234",
              "ShowingInstructions": "call first"}  # fmt: skip
    origin = Origin(system="mls", connection="mls-a", external_id="K1")
    try:
        async with hub.running(), serve_app(create_app(hub)) as running:
            feed = Feed(hub, running.url, {})
            await hub.engine.apply(Change(tenant=A, entity="Listing", fields=fields, origin=origin))
            await hub.engine.apply(Change(
                tenant=A, entity="Listing", fields={**fields, "PrivateRemarks": "lockbox 999"},
                origin=origin,
            ))  # fmt: skip
            async with hub.store.unit_of_work(A) as uow:  # an event that is not a record's change
                await uow.outbox.add(EventEnvelope(
                    source="/cadastre", type="cadastre.schema.drifted.v1", time=hub.clock.now(),
                    tenant=A, data={"added": ["PrivateRemarks"]},
                ))  # fmt: skip
                await uow.commit()
            await feed.published(A, 3)
            answers = {}
            for payload, key in keys.items():
                feed.keys = {A: key}
                answers[payload] = [
                    (await feed.get(A)).json()["events"],
                    (await feed.get(A, types="cadastre.listing.updated.v2")).json()["events"],
                ]
    finally:
        await hub.close()
    full, _ = answers[PayloadClass.FULL]
    created, updated = "cadastre.listing.created.v1", "cadastre.listing.updated.v1"
    assert [e["type"] for e in full] == [created, updated, "cadastre.schema.drifted.v1"]
    assert full[0]["data"]["fields"]["PrivateRemarks"] == "lockbox 1234"
    assert full[1]["data"]["fields"] == {"PrivateRemarks": "lockbox 999"}
    idx, idx_v2 = answers[PayloadClass.IDX]
    assert [e["type"] for e in idx] == [created, updated]
    assert idx[0]["data"]["fields"] == {"ListingKey": "K1", "City": "Austin"}
    assert idx[1]["data"]["fields"] == {}  # an update of withheld fields only
    assert idx_v2[0]["data"]["changed"] == {}
    assert "PrivateRemarks" not in orjson.dumps([idx, idx_v2]).decode()
    vow, _ = answers[PayloadClass.VOW]  # mls-a withholds nothing from VOW
    assert vow[0]["data"]["fields"]["PrivateRemarks"] == "lockbox 1234"
    assert [e["type"] for e in vow] == [created, updated]
