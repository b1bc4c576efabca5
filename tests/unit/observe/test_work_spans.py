"""The background work has spans and a log context too: the webhook normaliser (a span per batch,
the sync run inside it) and the write-back worker (a span per target, naming its new state);
vendor calls made inside see the tenant and connection they are for."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from cadastre.connectors.mls.reso import ResoConnectorSpec
from cadastre.directory import ConnectionService, ConnectionSpec
from cadastre.mapping import MappingRegistry
from cadastre.observe.context import current
from cadastre.ownership import load_registry
from cadastre.ports import OutboundWrite, WriteOperation, WriteReceipt, WriteState
from cadastre.sync import SyncEngine, SyncRunner
from cadastre.testing import FakeClock, FakeStore
from cadastre.testing.vault import VaultKit
from cadastre.vault import MemoryLockBackend
from tests.spans import named
from tests.unit.sync.test_writeback import T, World
from tests.unit.webhooks.test_inbox_normaliser import (
    NOW,
    PROJECT,
    Host,
    item,
    normaliser,
    store_webhooks,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def test_the_normaliser_spans_each_batch_with_its_sync_run_inside(clock, spans) -> None:
    kit = VaultKit(clock)
    store = kit.store
    assert isinstance(store, FakeStore)
    await ConnectionService(store, clock).put("acme", ConnectionSpec(
        name="crm", system="mls", connector="mls/reso", config={"base_url": "https://x.invalid"}
    ))  # fmt: skip
    mappings = MappingRegistry(PROJECT / "mappings", {"mls/reso": ResoConnectorSpec.family_mapping})
    runner = SyncRunner(SyncEngine(store, load_registry(), clock), store, clock)
    host = Host(runner, MemoryLockBackend(), mappings.load("mls/reso"))
    await store_webhooks(store, [item("A", 1, 1), item("B", 1, 1)], [item("C", 1, 1)])
    assert await normaliser(store, clock, host).run_once() == 2
    (batch,) = named(spans, "webhooks.normalise")
    assert dict(batch.attributes or {}) == {
        "cadastre.tenant": "acme", "cadastre.connection": "crm", "cadastre.entries": 2,
    }  # fmt: skip
    (run,) = named(spans, "sync.run")
    assert run.parent is not None
    assert run.parent.span_id == batch.context.span_id
    assert (run.attributes or {})["cadastre.outcome"] == "ok"
    pages = named(spans, "sync.page")
    assert pages
    assert all(p.parent is not None and p.parent.span_id == run.context.span_id for p in pages)
    assert current() == {}  # nothing left behind


async def test_the_write_back_worker_spans_each_target_and_names_its_state(
    clock, spans, monkeypatch
) -> None:
    world = World(clock)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    cid = await world.contact()
    seen: list[dict[str, str]] = []
    sent_in: list[trace.Span] = []
    original = world.crm.write

    async def write(outbound: OutboundWrite) -> WriteReceipt:
        seen.append(current())  # what a log line written by the vendor call would carry
        sent_in.append(trace.get_current_span())
        return await original(outbound)

    monkeypatch.setattr(world.crm, "write", write)
    await world.writeback.submit(T, "Contact", cid, {"Email": "ann@new.example"},
                                 operation=WriteOperation.UPDATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    (span,) = named(spans, "writeback.send")
    assert dict(span.attributes or {}) == {
        "cadastre.tenant": T, "cadastre.connection": "hubspot", "cadastre.entity": "Contact",
        "cadastre.operation": "update", "cadastre.attempts": 0,
        "cadastre.writeback.state": WriteState.APPLIED.value,
    }  # fmt: skip
    assert seen == [{"tenant": T, "connection": "hubspot"}]
    assert sent_in[0].get_span_context().span_id == span.context.span_id
    assert current() == {}
