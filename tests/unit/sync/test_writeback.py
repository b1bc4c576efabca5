"""Write-back end to end over fakes: planning (ownership, validation, routing), the worker's
modes and kill switch, retries, crash recovery per idempotency type, echo suppression and
propagation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cadastre.contract import Change, Origin
from cadastre.contract.events import EventEnvelope
from cadastre.errors import NotFound, OwnershipViolation, VendorRejected, VendorUnavailable
from cadastre.ownership import load_registry
from cadastre.ports import (
    BusMessage,
    Connection,
    ConnectionStatus,
    ExternalRef,
    Idempotency,
    WritebackMode,
    WriteOperation,
    WriteState,
)
from cadastre.sync import SyncEngine
from cadastre.sync.idempotency import target_key
from cadastre.sync.writeback import WriteRejected
from cadastre.sync.writeback_service import WriteBack
from cadastre.sync.writeback_worker import _outbound
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.testing.fake_target import FakeTargetConnector, VendorObject

T = "acme"
UPDATE, CREATE = WriteOperation.UPDATE, WriteOperation.CREATE


class Targets:
    def __init__(self, vendors: dict[str, FakeTargetConnector], modes: dict[str, str]) -> None:
        self.vendors = vendors
        self.modes = modes

    async def target(self, tenant: str, connection: Connection) -> FakeTargetConnector | None:
        return self.vendors.get(connection.name)

    def default_mode(self, connection: Connection) -> WritebackMode:
        return WritebackMode(self.modes.get(connection.name, "live"))


class World:
    def __init__(self, clock: FakeClock, **mode: Idempotency) -> None:
        self.clock = clock
        self.store = FakeStore(clock)
        self.engine = SyncEngine(self.store, load_registry(), clock)
        self.crm = FakeTargetConnector(mode=mode.get("crm", Idempotency.KEY), clock=clock)
        self.crm2 = FakeTargetConnector(mode=Idempotency.KEY, clock=clock)
        self.qbo = FakeTargetConnector(
            system="accounting", clock=clock,
            entities={"LedgerAccount": frozenset({"Name", "AccountNumber", "Active"})},
        )  # fmt: skip
        self.targets = Targets({"hubspot": self.crm, "hubspot2": self.crm2, "qbo": self.qbo},
                               {"qbo": "shadow"})  # fmt: skip
        self.writeback = WriteBack(self.store, load_registry(), clock, self.engine, self.targets,
                                   max_attempts=3)  # fmt: skip
        self.worker = self.writeback.worker(lease=60)

    async def connect(self, name: str, system: str, **config: Any) -> None:
        async with self.store.unit_of_work(T) as uow:
            await uow.connections.save(
                Connection(T, name, system, "test/target", config, None, ConnectionStatus.ACTIVE,
                           1, EPOCH),
                changed_by="test", change="added",
            )  # fmt: skip
            await uow.commit()

    async def contact(self, connection: str = "hubspot", external_id: str = "501") -> str:
        vendor = self.targets.vendors[connection]
        vendor.objects[external_id] = VendorObject({"Email": "ann@old.example"}, 1, EPOCH)
        result = await self.engine.apply(Change(
            tenant=T, entity="Contact", fields={"Email": "ann@old.example", "FirstName": "Ann"},
            origin=Origin(system="crm", connection=connection, external_id=external_id,
                          source_version="1", source_time=EPOCH),
        ))  # fmt: skip
        return result.canonical_id

    async def record(self, id: str) -> dict[str, Any]:
        async with self.store.unit_of_work(T) as uow:
            found = await uow.records.get("Contact", id)
        assert found is not None
        return dict(found.data)

    async def targets_of(self, write_id: str) -> list[Any]:
        return (await self.writeback.get(T, write_id))[1]


@pytest.fixture
async def world(clock: FakeClock) -> World:
    w = World(clock)
    await w.store.create_tenant(T, "Acme")
    await w.connect("hubspot", "crm")
    await w.connect("qbo", "accounting")
    return w


async def test_a_patch_goes_to_the_owner_and_comes_back_applied(world: World) -> None:
    cid = await world.contact()
    planned = await world.writeback.submit(T, "Contact", cid, {"Email": "ann@new.example"},
                                           operation=UPDATE, actor="cad_k1")  # fmt: skip
    (target,) = planned.targets
    assert (target.connection, target.system, target.external_id) == ("hubspot", "crm", "501")
    assert target.key == target_key(
        tenant=T, write_id=planned.write.id, connection="hubspot", entity="Contact",
        canonical_id=cid, operation="update", fields={"Email": "ann@new.example"},
    )  # fmt: skip
    assert len(target.key) == 32
    assert target.base_version == "1"
    assert (await world.record(cid))["Email"] == "ann@old.example"  # not before the vendor acks
    await world.worker.run_once()
    (done,) = await world.targets_of(planned.write.id)
    assert (done.state, done.attempts, done.external_id) == (WriteState.APPLIED, 1, "501")
    assert world.crm.objects["501"].values["Email"] == "ann@new.example"
    assert (await world.record(cid))["Email"] == "ann@new.example"
    async with world.store.unit_of_work(T) as uow:
        stamps = await uow.provenance.for_record("Contact", cid)
    assert stamps["Email"].connection == "hubspot"
    assert stamps["Email"].source_version == "2"


async def test_refused_and_unknown_fields_are_all_named(world: World) -> None:
    cid = await world.contact()
    with pytest.raises(OwnershipViolation) as refused:
        await world.writeback.submit(T, "Contact", cid,
                                     {"ContactKey": "x", "OwnerMemberKey": "y", "Email": "a@b.c"},
                                     operation=UPDATE, actor="k")  # fmt: skip
    assert [p.field for p in refused.value.result] == ["ContactKey", "OwnerMemberKey"]
    with pytest.raises(WriteRejected) as unknown:
        await world.writeback.submit(T, "Contact", cid, {"Shoe": 9, "Hat": 1},
                                     operation=UPDATE, actor="k")  # fmt: skip
    assert {p.field for p in unknown.value.problems} == {"Shoe", "Hat"}
    with pytest.raises(WriteRejected) as bad:
        await world.writeback.submit(T, "Contact", cid, {"Email": "x" * 200, "FirstName": 5},
                                     operation=UPDATE, actor="k")  # fmt: skip
    assert {p.reason for p in bad.value.problems} == {"invalid_value"}
    assert {p.field for p in bad.value.problems} == {"Email", "FirstName"}
    with pytest.raises(WriteRejected, match=r"cannot write Contact\.Company"):
        await world.writeback.submit(T, "Contact", cid, {"Company": "Acme"},
                                     operation=UPDATE, actor="k")  # fmt: skip
    with pytest.raises(NotFound):
        await world.writeback.submit(T, "Contact", "nope", {"Email": "a@b.c"},
                                     operation=UPDATE, actor="k")  # fmt: skip
    assert await world.writeback.targets_of(T) == []  # nothing stored by any of them


async def test_a_create_links_the_new_vendor_id(world: World) -> None:
    planned = await world.writeback.submit(T, "Contact", None, {"Email": "bo@example.com"},
                                           operation=CREATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    (done,) = await world.targets_of(planned.write.id)
    assert done.state is WriteState.APPLIED
    assert done.external_id == "101"
    async with world.store.unit_of_work(T) as uow:
        linked = await uow.xref.resolve("crm", "hubspot", "Contact", "101")
    assert linked == planned.write.canonical_id
    assert (await world.record(linked))["Email"] == "bo@example.com"


async def test_several_connections_of_a_system_need_a_default(world: World) -> None:
    await world.connect("hubspot2", "crm")
    with pytest.raises(WriteRejected, match="writeback_default"):
        await world.writeback.submit(T, "Contact", None, {"Email": "x@example.com"},
                                     operation=CREATE, actor="k")  # fmt: skip


async def test_modes_and_the_kill_switch(world: World) -> None:
    cid = await world.contact()

    async def patch(email: str) -> str:
        planned = await world.writeback.submit(T, "Contact", cid, {"Email": email},
                                               operation=UPDATE, actor="k")  # fmt: skip
        await world.worker.run_once()
        return planned.write.id

    await world.writeback.set_mode(T, "hubspot", WritebackMode.OFF, by="ops")
    (off,) = await world.targets_of(await patch("a@example.com"))
    await world.writeback.set_mode(T, "hubspot", WritebackMode.SHADOW, by="ops")
    (shadow,) = await world.targets_of(await patch("b@example.com"))
    assert (off.state, shadow.state) == (WriteState.SKIPPED, WriteState.SHADOWED)
    assert shadow.receipt is not None
    assert shadow.receipt["shadow"]["fields"] == {"Email": "b@example.com"}
    assert world.crm.calls == []
    await world.writeback.set_mode(T, "hubspot", WritebackMode.LIVE, by="ops")
    await world.writeback.stop(T, None, by="ops", reason="incident 7")
    held_id = await patch("c@example.com")
    (held,) = await world.targets_of(held_id)
    assert held.state is WriteState.HELD
    assert world.crm.calls == []
    assert await world.writeback.resume(T, None, by="ops") == 1
    await world.worker.run_once()
    (sent,) = await world.targets_of(held_id)
    assert sent.state is WriteState.APPLIED
    assert world.crm.objects["501"].values["Email"] == "c@example.com"
    with pytest.raises(NotFound):
        await world.writeback.set_mode(T, "nope", WritebackMode.LIVE, by="ops")


async def test_accounting_starts_in_shadow(world: World) -> None:
    async with world.store.unit_of_work(T) as uow:
        await uow.records.put("LedgerAccount", "LA1", {"Name": "Rent"}, expected_version=0)
        await uow.xref.link(ExternalRef("accounting", "qbo", "LedgerAccount", "Q1", "LA1"))
        await uow.commit()
    planned = await world.writeback.submit(T, "LedgerAccount", "LA1", {"Name": "Rent income"},
                                           operation=UPDATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    (target,) = await world.targets_of(planned.write.id)
    assert target.state is WriteState.SHADOWED
    assert world.qbo.calls == []
    status = await world.writeback.status(T)
    qbo = next(c for c in status.connections if c.connection == "qbo")
    assert (qbo.mode, qbo.mode_set, qbo.states) == (WritebackMode.SHADOW, False, {"shadowed": 1})


async def test_transient_errors_retry_then_fail_and_terminal_fail_at_once(
    world: World, clock: FakeClock
) -> None:
    cid = await world.contact()
    world.crm.fail_next = [VendorUnavailable("503"), VendorRejected("400 bad email", status=400)]
    planned = await world.writeback.submit(T, "Contact", cid, {"Email": "z@example.com"},
                                           operation=UPDATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    (retry,) = await world.targets_of(planned.write.id)
    assert (retry.state, retry.attempts, retry.error) == (WriteState.PENDING, 1, "503")
    await world.worker.run_once()  # not due yet
    assert len(world.crm.calls) == 1
    clock.advance(2)
    await world.worker.run_once()
    (failed,) = await world.targets_of(planned.write.id)
    assert (failed.state, failed.error) == (WriteState.FAILED, "400 bad email")


@pytest.mark.parametrize("mode", [Idempotency.KEY, Idempotency.NATURAL])
async def test_a_lost_answer_is_resent_safely_with_a_key_or_natural_key(
    clock: FakeClock, mode: Idempotency
) -> None:
    world = World(clock, crm=mode)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    world.crm.lose_answers = 1
    planned = await world.writeback.submit(T, "Contact", None, {"Email": "cy@example.com"},
                                           operation=CREATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    clock.advance(2)
    await world.worker.run_once()
    (done,) = await world.targets_of(planned.write.id)
    assert done.state is WriteState.APPLIED
    assert len(world.crm.objects) == 1
    assert len(world.crm.calls) == 2


async def test_a_lost_answer_without_idempotency_is_read_back(clock: FakeClock) -> None:
    world = World(clock, crm=Idempotency.NONE)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    world.crm.lose_answers = 1
    planned = await world.writeback.submit(T, "Contact", None, {"Email": "dee@example.com"},
                                           operation=CREATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    clock.advance(2)
    await world.worker.run_once()
    (done,) = await world.targets_of(planned.write.id)
    assert done.state is WriteState.APPLIED
    assert done.external_id == "101"
    assert world.crm.read_backs == 1
    assert len(world.crm.calls) == 1
    assert sum(world.crm.creates.values()) == 1


async def _crash_while_sending(world: World, clock: FakeClock, write_id: str) -> None:
    """A worker marks the target sending, the vendor acts, and the worker dies."""
    async with world.store.unit_of_work(T) as uow:
        (target,) = await uow.writes.claim(holder="dead", until=clock.now())
        await uow.writes.settle(target.write_id, target.connection, holder="dead",
                                state=WriteState.SENDING, attempts=1, release=False)  # fmt: skip
        await uow.commit()
    await world.crm.write(_outbound(replace(target, state=WriteState.SENDING)))
    clock.advance(1)


async def test_recovery_without_idempotency(clock: FakeClock) -> None:
    world = World(clock, crm=Idempotency.NONE)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    applied = await world.writeback.submit(T, "Contact", None, {"Email": "e@example.com"},
                                           operation=CREATE, actor="k")  # fmt: skip
    await _crash_while_sending(world, clock, applied.write.id)
    await world.worker.run_once()
    (found,) = await world.targets_of(applied.write.id)
    assert found.state is WriteState.APPLIED
    assert sum(world.crm.creates.values()) == 1
    # Two objects match a create's values: it cannot tell -> indeterminate, alert, no resend
    world.crm.objects["999"] = VendorObject({"Email": "f@example.com"})
    twice = await world.writeback.submit(T, "Contact", None, {"Email": "f@example.com"},
                                         operation=CREATE, actor="k")  # fmt: skip
    await _crash_while_sending(world, clock, twice.write.id)
    await world.worker.run_once()
    (unsure,) = await world.targets_of(twice.write.id)
    assert unsure.state is WriteState.INDETERMINATE
    assert "hold those values" in unsure.error
    async with world.store.unit_of_work(T) as uow:
        alerts = [m.event for m in await uow.outbox.pending(100)
                  if m.event.type == "cadastre.alert.raised.v1"]  # fmt: skip
    assert alerts[-1].data["alert"] == "writeback_indeterminate"
    assert alerts[-1].data["write_id"] == twice.write.id


async def test_an_untouched_update_is_resent_a_touched_one_is_indeterminate(
    clock: FakeClock,
) -> None:
    world = World(clock, crm=Idempotency.NONE)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    cid = await world.contact()
    first = await world.writeback.submit(T, "Contact", cid, {"Email": "g@example.com"},
                                         operation=UPDATE, actor="k")  # fmt: skip
    async with world.store.unit_of_work(T) as uow:  # died before the vendor call
        (target,) = await uow.writes.claim(holder="dead", until=clock.now())
        await uow.writes.settle(target.write_id, target.connection, holder="dead",
                                state=WriteState.SENDING, attempts=1, release=False)  # fmt: skip
        await uow.commit()
    clock.advance(1)
    await world.worker.run_once()
    (resent,) = await world.targets_of(first.write.id)
    assert resent.state is WriteState.APPLIED
    assert len(world.crm.calls) == 1
    second = await world.writeback.submit(T, "Contact", cid, {"Email": "h@example.com"},
                                          operation=UPDATE, actor="k")  # fmt: skip
    async with world.store.unit_of_work(T) as uow:
        (target,) = await uow.writes.claim(holder="dead", until=clock.now())
        await uow.writes.settle(target.write_id, target.connection, holder="dead",
                                state=WriteState.SENDING, attempts=1, release=False)  # fmt: skip
        await uow.commit()
    world.crm.touch("501", FirstName="Someone")  # edited at the vendor meanwhile
    clock.advance(1)
    await world.worker.run_once()
    (unsure,) = await world.targets_of(second.write.id)
    assert unsure.state is WriteState.INDETERMINATE
    assert len(world.crm.calls) == 1


async def test_the_vendor_echo_is_dropped_a_later_version_passes(world: World) -> None:
    cid = await world.contact()
    planned = await world.writeback.submit(T, "Contact", cid, {"Email": "i@example.com"},
                                           operation=UPDATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    assert planned.targets
    origin = Origin(system="crm", connection="hubspot", external_id="501", source_version="2",
                    source_time=world.crm.objects["501"].modified)  # fmt: skip
    echo = Change(tenant=T, entity="Contact", fields={"Email": "i@example.com"}, origin=origin)
    (item,) = await world.engine.apply_batch([echo])
    assert item.result is not None
    assert item.result.echo
    assert item.result.canonical_id == cid
    later = world.crm.touch("501", Email="j@example.com")
    newer = Change(tenant=T, entity="Contact", fields={"Email": "j@example.com"},
                   origin=origin.model_copy(update={"source_version": later.source_version,
                                                    "source_time": later.source_time}))  # fmt: skip
    (passed,) = await world.engine.apply_batch([newer])
    assert passed.result is not None
    assert not passed.result.echo
    assert (await world.record(cid))["Email"] == "j@example.com"


async def test_propagation_to_other_connections_never_back(world: World) -> None:
    await world.connect("hubspot2", "crm")
    cid = await world.contact()
    world.crm2.objects["77"] = VendorObject({"Email": "ann@old.example"})
    async with world.store.unit_of_work(T) as uow:
        await uow.xref.link(ExternalRef("crm", "hubspot2", "Contact", "77", cid))
        await uow.commit()
    await world.engine.apply(Change(  # the change the event below reports
        tenant=T, entity="Contact", fields={"Email": "k@example.com"},
        origin=Origin(system="crm", connection="hubspot", external_id="501",
                      source_version="2", source_time=EPOCH + timedelta(seconds=1)),
    ))  # fmt: skip
    propagator = world.writeback.propagator(bus=None)  # type: ignore[arg-type]
    event = EventEnvelope(
        source="/crm/hubspot", type="cadastre.contact.updated.v1", subject=cid, time=EPOCH,
        tenant=T, data={"entity": "Contact", "fields": {"Email": "k@example.com"},
                        "origin": {"system": "crm", "connection": "hubspot"}},
    )  # fmt: skip
    message = BusMessage(event, "cadastre.acme.contact.updated", 1)
    await propagator.handle([message])
    await propagator.handle([message])  # a redelivery adds nothing
    (target,) = await world.writeback.targets_of(T)
    assert (target.connection, target.fields) == ("hubspot2", {"Email": "k@example.com"})
    async with world.store.unit_of_work(T) as uow:
        write = await uow.writes.get(target.write_id)
    assert write is not None
    assert write.causation_id == event.id
    await world.worker.run_once()
    assert world.crm2.objects["77"].values["Email"] == "k@example.com"
    assert world.crm.calls == []  # never back to where it came from


async def test_a_change_through_no_connection_goes_to_every_holder(world: World) -> None:
    """A person's conflict resolution (origin core, no connection) must reach every system that
    holds the record, or the losing side keeps its value for ever."""
    await world.connect("hubspot2", "crm")
    cid = await world.contact()
    world.crm2.objects["77"] = VendorObject({"Email": "ann@old.example"})
    async with world.store.unit_of_work(T) as uow:
        await uow.xref.link(ExternalRef("crm", "hubspot2", "Contact", "77", cid))
        held = await uow.records.get("Contact", cid)
        assert held is not None
        await uow.records.put(
            "Contact",
            cid,
            {**held.data, "Email": "chosen@example.com"},
            expected_version=held.version,
        )  # the resolution, as applied
        await uow.commit()
    propagator = world.writeback.propagator(bus=None)  # type: ignore[arg-type]
    event = EventEnvelope(
        source="/core", type="cadastre.contact.updated.v1", subject=cid, time=EPOCH, tenant=T,
        data={"entity": "Contact", "fields": {"Email": "chosen@example.com"},
              "origin": {"system": "core", "causation_id": "cf_1"}},
    )  # fmt: skip
    await propagator.handle([BusMessage(event, "cadastre.acme.contact.updated", 1)])
    targets = await world.writeback.targets_of(T)
    assert sorted(t.connection for t in targets) == ["hubspot", "hubspot2"]
    await world.worker.run_once()
    assert world.crm.objects["501"].values["Email"] == "chosen@example.com"
    assert world.crm2.objects["77"].values["Email"] == "chosen@example.com"


@pytest.mark.parametrize("how", ["stopped", "shadow", "off"])
async def test_a_target_that_may_have_been_sent_waits_while_write_back_is_not_live(
    clock: FakeClock, how: str
) -> None:
    world = World(clock, crm=Idempotency.KEY)
    await world.store.create_tenant(T, "Acme")
    await world.connect("hubspot", "crm")
    planned = await world.writeback.submit(T, "Contact", None, {"Email": "w@example.com"},
                                           operation=CREATE, actor="k")  # fmt: skip
    await _crash_while_sending(world, clock, planned.write.id)
    if how == "stopped":
        await world.writeback.stop(T, "hubspot", by="ops", reason="incident 9")
    else:
        await world.writeback.set_mode(T, "hubspot", WritebackMode(how), by="ops")
    await world.worker.run_once()
    (held,) = await world.targets_of(planned.write.id)
    assert held.state is WriteState.HELD  # neither resent, nor skipped/shadowed (forgotten)
    assert len(world.crm.calls) == 1
    await world.writeback.set_mode(T, "hubspot", WritebackMode.LIVE, by="ops")
    assert await world.writeback.resume(T, "hubspot", by="ops") == 1
    await world.worker.run_once()
    (done,) = await world.targets_of(planned.write.id)
    assert done.state is WriteState.APPLIED
    assert sum(world.crm.creates.values()) == 1
    assert done.external_id == "101"


async def test_a_receipt_is_never_taken_for_the_echo_of_an_earlier_write(
    world: World, clock: FakeClock
) -> None:
    world.crm.versions = False  # echoes are matched by values: the same values come back
    cid = await world.contact()

    async def patch(email: str) -> None:
        await world.writeback.submit(T, "Contact", cid, {"Email": email}, operation=UPDATE,
                                     actor="k")  # fmt: skip
        await world.worker.run_once()
        clock.advance(1)

    await patch("x@example.com")
    assert (await world.record(cid))["Email"] == "x@example.com"
    edited = world.crm.touch("501", Email="y@example.com")  # changed at the vendor, synced in
    (synced,) = await world.engine.apply_batch([Change(
        tenant=T, entity="Contact", fields={"Email": "y@example.com"},
        origin=Origin(system="crm", connection="hubspot", external_id="501",
                      source_time=edited.source_time),
    )])  # fmt: skip
    assert synced.result is not None
    assert not synced.result.echo
    clock.advance(1)
    await patch("x@example.com")  # the platform sets the first value again
    assert world.crm.objects["501"].values["Email"] == "x@example.com"
    assert (await world.record(cid))["Email"] == "x@example.com"


async def test_payments_are_created_never_changed_and_ledger_entries_never_deleted(
    world: World,
) -> None:
    payment = frozenset({"Amount", "Currency", "PaidAt", "PaymentMethod", "LeaseId"})
    world.qbo.entities = {**world.qbo.entities, "Payment": payment,
                          "LedgerEntry": frozenset({"Amount", "Memo"})}  # fmt: skip
    created = await world.writeback.submit(T, "Payment", None,
                                           {"Amount": "950.00", "Currency": "USD"},
                                           operation=CREATE, actor="k")  # fmt: skip
    assert [t.connection for t in created.targets] == ["qbo"]
    async with world.store.unit_of_work(T) as uow:
        await uow.records.put("Payment", "P1", {"Amount": "950.00"}, expected_version=0)
        await uow.xref.link(ExternalRef("accounting", "qbo", "Payment", "Q9", "P1"))
        await uow.records.put("LedgerEntry", "LE1", {"Amount": "10.00"}, expected_version=0)
        await uow.xref.link(ExternalRef("accounting", "qbo", "LedgerEntry", "J1:1", "LE1"))
        await uow.commit()
    with pytest.raises(OwnershipViolation) as changed:
        await world.writeback.submit(T, "Payment", "P1", {"Amount": "1.00", "Currency": "EUR"},
                                     operation=UPDATE, actor="k")  # fmt: skip
    assert [p.field for p in changed.value.result] == ["Amount", "Currency"]
    assert "only when creating" in changed.value.result[0].detail
    for entity, id in (("Payment", "P1"), ("LedgerEntry", "LE1")):
        with pytest.raises(OwnershipViolation, match=f"may not delete {entity}"):
            await world.writeback.submit(T, entity, id, {}, operation=WriteOperation.DELETE,
                                         actor="k")  # fmt: skip
    assert [t.write_id for t in await world.writeback.targets_of(T)] == [created.write.id]


async def test_propagation_asks_for_each_connector_once_per_batch(world: World) -> None:
    await world.connect("hubspot2", "crm")
    cid = await world.contact()
    world.crm2.objects["77"] = VendorObject({"Email": "ann@old.example"})
    async with world.store.unit_of_work(T) as uow:
        await uow.xref.link(ExternalRef("crm", "hubspot2", "Contact", "77", cid))
        await uow.commit()
    asked: list[str] = []
    look = world.targets.target

    async def counted(tenant: str, connection: Connection) -> FakeTargetConnector | None:
        asked.append(connection.name)
        return await look(tenant, connection)

    world.targets.target = counted  # type: ignore[method-assign]
    propagator = world.writeback.propagator(bus=None)  # type: ignore[arg-type]
    messages = [
        BusMessage(EventEnvelope(
            source="/crm/hubspot", type="cadastre.contact.updated.v1", subject=cid, time=EPOCH,
            tenant=T, data={"entity": "Contact", "fields": {"Email": f"m{i}@example.com"},
                            "origin": {"system": "crm", "connection": "hubspot"}},
        ), "cadastre.acme.contact.updated", i + 1)
        for i in range(3)
    ]  # fmt: skip
    await propagator.handle(messages)
    assert asked == ["hubspot2"]
    assert len(await world.writeback.targets_of(T)) == 3


async def test_a_read_with_our_version_and_someone_elses_edit_is_not_an_echo(
    world: World,
) -> None:
    """A vendor object read whole after our write carries our write's version, and may carry a
    person's edit of another field made just before it (its own webhook lost): that read passes,
    or the edit is never heard of."""
    cid = await world.contact()
    await world.writeback.submit(T, "Contact", cid, {"Email": "i@example.com"},
                                 operation=UPDATE, actor="k")  # fmt: skip
    await world.worker.run_once()
    origin = Origin(system="crm", connection="hubspot", external_id="501", source_version="2",
                    source_time=world.crm.objects["501"].modified)  # fmt: skip
    same = Change(tenant=T, entity="Contact", fields={"Email": "i@example.com", "FirstName": "Ann"},
                  origin=origin)  # fmt: skip
    (dropped,) = await world.engine.apply_batch([same])
    assert dropped.result is not None
    assert dropped.result.echo  # nothing new besides ours: our echo
    fields = {"Email": "i@example.com", "FirstName": "Annabel"}
    news = Change(tenant=T, entity="Contact", fields=fields, origin=origin)
    (passed,) = await world.engine.apply_batch([news])
    assert passed.result is not None
    assert not passed.result.echo
    assert (await world.record(cid))["FirstName"] == "Annabel"
