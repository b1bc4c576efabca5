"""A create the vendor acknowledged whose receipt the hub refuses (found by the kill trials: the
QuickBooks receipt carried PaidAt as a bare date) still links the vendor's id to the written
record, so the vendor's next report of the object lands there instead of making a second record.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadastre.contract import Change, Origin
from cadastre.ownership import load_registry
from cadastre.ports import (
    Connection,
    ConnectionStatus,
    OutboundWrite,
    WritebackMode,
    WriteOperation,
    WriteReceipt,
    WriteState,
)
from cadastre.sync import SyncEngine
from cadastre.sync.writeback_service import WriteBack
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.testing.fake_target import FakeTargetConnector

T = "acme"


@dataclass
class Normalising(FakeTargetConnector):
    """A vendor answering with a value the contract refuses (a list where text belongs)."""

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        receipt = await super().write(write)
        return WriteReceipt(receipt.external_id, receipt.source_version, receipt.source_time,
                            {**receipt.values, "FirstName": ["refused"]})  # fmt: skip


class Targets:
    def __init__(self, vendor: FakeTargetConnector) -> None:
        self.vendor = vendor

    async def target(self, tenant: str, connection: Connection) -> FakeTargetConnector:
        return self.vendor

    def default_mode(self, connection: Connection) -> WritebackMode:
        return WritebackMode.LIVE


async def test_a_refused_receipt_still_links_the_created_object(clock: FakeClock) -> None:
    store = FakeStore(clock)
    engine = SyncEngine(store, load_registry(), clock)
    vendor = Normalising(clock=clock)
    writeback = WriteBack(store, load_registry(), clock, engine, Targets(vendor))
    await store.create_tenant(T, "Acme")
    async with store.unit_of_work(T) as uow:
        await uow.connections.save(
            Connection(T, "hubspot", "crm", "test/target", {}, None, ConnectionStatus.ACTIVE, 1,
                       EPOCH),
            changed_by="test", change="added",
        )  # fmt: skip
        await uow.commit()
    planned = await writeback.submit(T, "Contact", None, {"Email": "eve@example.com",
                                                           "FirstName": "Eve"},
                                     operation=WriteOperation.CREATE, actor="k")  # fmt: skip
    await writeback.worker(lease=60).run_once()

    (done,) = (await writeback.get(T, planned.write.id))[1]
    assert (done.state, done.external_id) == (WriteState.APPLIED, "101")
    async with store.unit_of_work(T, read_only=True) as uow:
        linked = await uow.xref.resolve("crm", "hubspot", "Contact", "101")
        held = await uow.records.get("Contact", planned.write.canonical_id)
    assert linked == planned.write.canonical_id
    assert held is None  # the receipt itself was refused

    # The vendor's own report of the object lands on the written record, not on a new one.
    result = await engine.apply(Change(
        tenant=T, entity="Contact", fields={"Email": "eve@example.com", "FirstName": "Eve"},
        origin=Origin(system="crm", connection="hubspot", external_id="101",
                      source_version="2", source_time=clock.now()),
    ))  # fmt: skip
    assert result.canonical_id == planned.write.canonical_id
    assert sum(vendor.creates.values()) == 1
