"""``WriteBackWorker``: sends planned write targets to their connections, once each.

It claims due targets (``uow.writes.claim``: two workers never hold one), and per target:

| connection | the target |
|---|---|
| mode ``off`` | ``skipped`` |
| mode ``shadow`` | ``shadowed``, the vendor request it would send recorded, nothing sent |
| a kill switch on (tenant-wide or the connection's) | ``held``, sent after ``writeback resume`` |
| mode ``live`` | ``sending`` (committed), the vendor call, then ``applied`` |

``applied`` commits in one transaction with the vendor's receipt applied as a ``Change`` through
``SyncEngine`` (origin: the target's system and connection, the vendor's id, version and time,
causation id: the write id; a create's cross-reference is made there) and the echo record that
lets the vendor's report of the write be dropped. A transient vendor error is retried with
backoff on the hub's clock (``max_attempts``); a terminal one fails the target with the vendor's
message.

Crash recovery: a target found ``sending`` (its worker died between the commit and the answer)
is never resent blindly. When the vendor replays a key or upserts by a natural key, resending is
safe; otherwise the connector reads back what the vendor holds: our values there -> ``applied``;
an update not applied and the object untouched since (same version) -> resent; anything else ->
``indeterminate`` with an alert (``cadastre.alert.raised.v1``), for a person to reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from opentelemetry import trace
from pydantic_core import to_jsonable_python

from cadastre import failpoints
from cadastre.contract.changes import Change, Operation, Origin
from cadastre.contract.events import EventEnvelope
from cadastre.errors import (
    CadastreError,
    RequestNotSent,
    VendorUnavailable,
    WriteIndeterminate,
    is_transient,
)
from cadastre.observe import traced, working_for
from cadastre.ports import (
    ExternalRef,
    Idempotency,
    OutboundWrite,
    WritebackMode,
    WriteEcho,
    WriteOperation,
    WriteState,
)
from cadastre.sync.echo import DELETED, RECEIPT_KEY_PREFIX, values_hash
from cadastre.sync.origin import event_source
from cadastre.sync.writeback import PROPAGATION_ACTOR

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from types import TracebackType

    from cadastre.observe import Metrics
    from cadastre.ports import (
        Clock,
        Store,
        TargetConnector,
        UnitOfWork,
        WriteReceipt,
        WriteTarget,
    )
    from cadastre.sync.engine import SyncEngine
    from cadastre.sync.writeback import TargetDirectory

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("cadastre.writeback")

ALERT_EVENT = "cadastre.alert.raised.v1"
MAYBE_SENT = "maybe_sent"  # receipt marker: a transient error after the request may have left


class _ClaimLost(Exception):
    """Our claim ran out and another worker took the target: roll back, write nothing."""


class WriteBackWorker:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        engine: SyncEngine,
        targets: TargetDirectory,
        *,
        lease: float = 300.0,
        poll: float = 1.0,
        batch: int = 20,
        max_attempts: int = 8,
        backoff: float = 2.0,
        max_backoff: float = 300.0,
        echo_keep: timedelta = timedelta(days=7),
        metrics: Metrics | None = None,
        workers: set[WriteBackWorker] | None = None,
    ) -> None:
        """``lease``: how long a claim lasts (longer than any vendor call: a target whose
        claim ran out while ``sending`` is taken for recovery). ``workers``: where a running
        worker registers, so the planner's nudges reach it."""
        self._store = store
        self._clock = clock
        self._engine = engine
        self._targets = targets
        self._lease = timedelta(seconds=lease)
        self._poll = poll
        self._batch = batch
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._echo_keep = echo_keep
        self._metrics = metrics
        self._workers = workers
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: datetime | None = None

    # ------------------------------------------------------------------ running

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="writeback worker")
        if self._workers is not None:
            self._workers.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._workers is not None:
            self._workers.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def nudge(self, tenant: str | None = None) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                busy = await self.run_once()
            except CadastreError as exc:  # the store is away: the next pass tries again
                log.warning("write-back pass failed: %s", exc)
                busy = False
            except Exception:  # a bug must not stop write-back in silence
                log.exception("write-back pass failed")
                busy = False
            if busy:
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep(self._poll))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()

    async def run_once(self) -> bool:
        """Process what is due now for every tenant; True when a claim came back full (more may
        be waiting)."""
        full = False
        for tenant in [t.id for t in await self._store.list_tenants()]:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                if not await uow.writes.any_due():
                    continue
            holder = secrets.token_hex(8)
            async with self._store.unit_of_work(tenant) as uow:
                claimed = await uow.writes.claim(
                    holder=holder, until=self._clock.now() + self._lease, limit=self._batch
                )
                await uow.commit()
            full = full or len(claimed) >= self._batch
            for target in claimed:
                try:
                    with working_for(tenant, target.connection), traced(_tracer, "writeback.send", {
                        "cadastre.tenant": tenant, "cadastre.connection": target.connection,
                        "cadastre.entity": target.entity,
                        "cadastre.operation": target.operation.value,
                        "cadastre.attempts": target.attempts,
                    }):  # fmt: skip
                        await self._process(tenant, target, holder)
                except _ClaimLost:
                    log.warning("write %s to %s: claim lost", target.write_id, target.connection)
                except CadastreError as exc:
                    # The store is away: the claim runs out and the target is taken again
                    # (a sending one through recovery, never a blind resend).
                    log.warning("write %s to %s: %s", target.write_id, target.connection, exc)
        await self._prune_echoes()
        return full

    # ------------------------------------------------------------------ one target

    async def _process(self, tenant: str, target: WriteTarget, holder: str) -> None:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            connection = await uow.connections.get(target.connection)
            switches = await uow.writes.switches()
        if connection is None:
            await self._settle(tenant, target, holder, WriteState.FAILED,
                               error=f"connection {target.connection} is gone")  # fmt: skip
            return
        recovering = target.state is WriteState.SENDING or bool(
            target.receipt and target.receipt.get(MAYBE_SENT)
        )
        switch = switches.get(connection.name)
        mode = (switch.mode if switch is not None else None) or self._targets.default_mode(
            connection
        )
        if not recovering and mode is WritebackMode.OFF:
            await self._settle(tenant, target, holder, WriteState.SKIPPED)
            return
        try:
            connector = await self._targets.target(tenant, connection)
        except CadastreError as exc:
            await self._retry(tenant, target, holder, exc)
            return
        if connector is None:
            await self._settle(tenant, target, holder, WriteState.FAILED,
                               error=f"connection {connection.name} takes no writes")  # fmt: skip
            return
        outbound = _outbound(target)
        if not recovering and mode is WritebackMode.SHADOW:
            await self._settle(tenant, target, holder, WriteState.SHADOWED,
                               receipt={"shadow": _request(connector, outbound)})  # fmt: skip
            return
        stopped = [s for s in (switches.get(""), switch) if s is not None and s.stopped]
        if recovering and (stopped or mode is not WritebackMode.LIVE):
            # It may have reached the vendor: never skipped or shadowed (that would forget it),
            # and nothing is resent while write-back is stopped or not live. Held, it keeps its
            # mark and is recovered (not sent blindly) once released by ``writeback resume``.
            why = (stopped[0].reason or "kill switch on") if stopped else f"mode {mode.value}"
            await self._settle(tenant, target, holder, WriteState.HELD, receipt={MAYBE_SENT: True},
                               error=f"held, may have been sent: {why}")  # fmt: skip
            return
        if not recovering and stopped:
            await self._settle(tenant, target, holder, WriteState.HELD,
                               error=f"held: {stopped[0].reason or 'kill switch on'}")  # fmt: skip
            return
        # Also when recovering: a superseded field is neither resent (it would undo the newer
        # value) nor looked for in the read-back (the newer write replaced it at the vendor).
        current = await self._still_current(tenant, target)
        if not current:
            await self._settle(tenant, target, holder, WriteState.SKIPPED,
                               error="superseded: the record holds newer values of every field "
                                     "since this propagation was planned")  # fmt: skip
            return
        if current != dict(target.fields):
            target = replace(target, fields=current)
            outbound = _outbound(target)
        if recovering:
            await self._recover(tenant, target, holder, connector, outbound)
        else:
            await self._send(tenant, target, holder, connector, outbound)

    async def _still_current(self, tenant: str, target: WriteTarget) -> dict[str, Any]:
        """The fields of a propagation (a vendor change carried to another vendor) whose value
        the record still holds. A newer value that arrived since has its own propagation;
        sending the older one after it would undo it at this vendor (and, through the receipt,
        here). Platform writes and creates are sent as asked: the record learns their values
        from the vendor's answer."""
        fields = dict(target.fields)
        if target.operation is not WriteOperation.UPDATE:
            return fields
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            write = await uow.writes.get(target.write_id)
            if write is None or write.actor != PROPAGATION_ACTOR:
                return fields
            record = await uow.records.get(target.entity, target.canonical_id)
        if record is None or record.deleted:
            return fields
        return {n: v for n, v in fields.items() if _same(record.data.get(n), v)}

    async def _send(
        self, tenant: str, target: WriteTarget, holder: str, connector: TargetConnector,
        outbound: OutboundWrite,
    ) -> None:  # fmt: skip
        attempts = target.attempts + 1
        # Committed before the call: a crash from here on leaves the target ``sending``, and
        # whoever takes it next recovers it instead of sending it again.
        if not await self._mark(tenant, target, holder, WriteState.SENDING, attempts=attempts):
            raise _ClaimLost
        target = replace(target, state=WriteState.SENDING, attempts=attempts)
        failpoints.reach("writeback.sent")
        try:
            receipt = await connector.write(outbound)
        except WriteIndeterminate as exc:
            await self._indeterminate(tenant, target, holder, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            await self._failed_call(tenant, target, holder, connector, exc)
            return
        failpoints.reach("writeback.acked")
        await self._applied(tenant, target, holder, receipt)

    async def _failed_call(
        self, tenant: str, target: WriteTarget, holder: str, connector: TargetConnector,
        exc: Exception,
    ) -> None:  # fmt: skip
        if not is_transient(exc):
            message = str(exc) if isinstance(exc, CadastreError) else type(exc).__name__
            if not isinstance(exc, CadastreError):
                log.error("write %s to %s failed", target.write_id, target.connection,
                          exc_info=exc)  # fmt: skip
            await self._settle(tenant, target, holder, WriteState.FAILED, error=message)
            return
        # Sent, perhaps: a vendor that neither replays keys nor upserts must be read back.
        maybe = (
            not isinstance(exc, RequestNotSent)
            and _idempotency(connector, target) is Idempotency.NONE
        )
        await self._retry(tenant, target, holder, exc, maybe_sent=maybe)

    async def _recover(
        self, tenant: str, target: WriteTarget, holder: str, connector: TargetConnector,
        outbound: OutboundWrite,
    ) -> None:  # fmt: skip
        if self._metrics is not None:
            self._metrics.counter("cadastre_writeback_recoveries_total").labels(
                tenant, target.connection
            ).inc()
        if _idempotency(connector, target) is not Idempotency.NONE:
            await self._send(tenant, target, holder, connector, outbound)  # replayed or upserted
            return
        try:
            found = await connector.read_back(outbound)
        except WriteIndeterminate as exc:
            await self._indeterminate(tenant, target, holder, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - classified: transient is retried
            if is_transient(exc):
                await self._retry(tenant, target, holder, exc, maybe_sent=True)
            else:
                await self._indeterminate(tenant, target, holder, f"read-back failed: {exc}")
            return
        if target.operation is WriteOperation.DELETE:
            if found is None:
                await self._applied(tenant, target, holder, None)
            else:
                await self._send(tenant, target, holder, connector, outbound)  # still there
            return
        if found is not None and _holds(found, target.fields):
            await self._applied(tenant, target, holder, found)
            return
        if (
            target.operation is WriteOperation.UPDATE
            and found is not None
            and (target.base_version is not None and found.source_version == target.base_version)
        ):
            # The vendor holds the version we last knew: our write never landed, nobody else's
            # did either, so sending it now is what would have happened.
            await self._send(tenant, target, holder, connector, outbound)
            return
        why = (
            "the vendor holds no such object, and cannot prove it never received the create"
            if found is None
            else "the vendor's object does not hold our values and changed since"
        )
        await self._indeterminate(tenant, target, holder, why)

    # ------------------------------------------------------------------ outcomes

    async def _applied(
        self, tenant: str, target: WriteTarget, holder: str, receipt: WriteReceipt | None
    ) -> None:
        external_id = receipt.external_id if receipt is not None else target.external_id
        stored: dict[str, Any] = {}
        if receipt is not None:
            stored = {
                "external_id": receipt.external_id, "source_version": receipt.source_version,
                "source_time": receipt.source_time.isoformat() if receipt.source_time else None,
                "replayed": receipt.replayed,
            }  # fmt: skip
        written = _written(target, receipt)
        echo = None
        if external_id is not None:
            echo = WriteEcho(
                connection=target.connection, entity=target.entity, external_id=external_id,
                source_version=receipt.source_version if receipt is not None else None,
                values_hash=values_hash(written),
                fields=(DELETED,) if target.operation is WriteOperation.DELETE
                else tuple(sorted(written)),
                recorded_at=self._clock.now(),
            )  # fmt: skip

        async def finish(uow: UnitOfWork) -> None:
            if not await uow.writes.settle(
                target.write_id, target.connection, holder=holder, state=WriteState.APPLIED,
                external_id=external_id, receipt=stored, error="",
            ):  # fmt: skip
                raise _ClaimLost
            if echo is not None:
                await uow.writes.add_echoes([echo])
            if target.operation is WriteOperation.CREATE and external_id is not None:
                # The receipt may be refused here (the contract, a conflict) while the vendor
                # holds the object all the same: link it, so its next report lands on this
                # record instead of making a second one.
                ref = ExternalRef(target.system, target.connection, target.entity, external_id,
                                  target.canonical_id)  # fmt: skip
                if await uow.xref.resolve(ref.system, ref.connection, ref.entity,
                                          external_id) is None:  # fmt: skip
                    await uow.xref.link(ref)

        change = _change(tenant, target, receipt, written)
        if change is None:
            async with self._store.unit_of_work(tenant) as uow:
                await finish(uow)
                await uow.commit()
        else:
            (item,) = await self._engine.apply_batch([change], also=finish)
            if item.result is None and item.error is not None:
                log.warning("write %s to %s: the receipt was not applied locally: %s",
                            target.write_id, target.connection, item.error)  # fmt: skip
        self._count(tenant, target, WriteState.APPLIED)

    async def _indeterminate(self, tenant: str, target: WriteTarget, holder: str, why: str) -> None:
        now = self._clock.now()
        alert = EventEnvelope(
            source=event_source(Origin(system=target.system, connection=target.connection)),
            type=ALERT_EVENT, subject=target.canonical_id, time=now, tenant=tenant,
            data={
                "alert": "writeback_indeterminate", "severity": "warning",
                "write_id": target.write_id, "connection": target.connection,
                "entity": target.entity, "canonical_id": target.canonical_id,
                "external_id": target.external_id, "message": why,
                "action": "check the record at the vendor, then fix it there or write again "
                          "(`cadastre writes show " + target.write_id + "`)",
            },
        )  # fmt: skip
        async with self._store.unit_of_work(tenant) as uow:
            if not await uow.writes.settle(
                target.write_id, target.connection, holder=holder,
                state=WriteState.INDETERMINATE, error=why,
            ):  # fmt: skip
                raise _ClaimLost
            await uow.outbox.add(alert)
            await uow.audit.append(
                actor="writeback", action="write.indeterminate", entity=target.entity,
                entity_id=target.canonical_id,
                detail={"write_id": target.write_id, "connection": target.connection, "why": why},
            )  # fmt: skip
            await uow.commit()
        self._count(tenant, target, WriteState.INDETERMINATE)

    async def _retry(
        self, tenant: str, target: WriteTarget, holder: str, exc: Exception, *,
        maybe_sent: bool = False,
    ) -> None:  # fmt: skip
        attempts = max(target.attempts, 1)
        message = str(exc) if isinstance(exc, CadastreError) else type(exc).__name__
        if attempts >= self._max_attempts:
            if maybe_sent:
                await self._indeterminate(
                    tenant, target, holder, f"gave up after {attempts} attempts: {message}"
                )
            else:
                await self._settle(tenant, target, holder, WriteState.FAILED,
                                   error=f"gave up after {attempts} tries: {message}")  # fmt: skip
            return
        wait = min(self._max_backoff, self._backoff * 2 ** (attempts - 1))
        if isinstance(exc, VendorUnavailable) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        receipt = {MAYBE_SENT: True} if maybe_sent else {}
        await self._settle(
            tenant, target, holder, WriteState.PENDING, error=message, receipt=receipt,
            next_attempt_at=self._clock.now() + timedelta(seconds=wait),
        )  # fmt: skip

    async def _mark(
        self, tenant: str, target: WriteTarget, holder: str, state: WriteState, *, attempts: int
    ) -> bool:
        async with self._store.unit_of_work(tenant) as uow:
            held = await uow.writes.settle(
                target.write_id, target.connection, holder=holder, state=state,
                attempts=attempts, release=False,
            )  # fmt: skip
            await uow.commit()
        return held

    async def _settle(
        self, tenant: str, target: WriteTarget, holder: str, state: WriteState, *,
        error: str | None = None, receipt: Mapping[str, Any] | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:  # fmt: skip
        async with self._store.unit_of_work(tenant) as uow:
            if not await uow.writes.settle(
                target.write_id, target.connection, holder=holder, state=state, error=error,
                receipt=receipt, next_attempt_at=next_attempt_at,
            ):  # fmt: skip
                raise _ClaimLost
            await uow.commit()
        self._count(tenant, target, state)

    def _count(self, tenant: str, target: WriteTarget, state: WriteState) -> None:
        trace.get_current_span().set_attribute("cadastre.writeback.state", state.value)
        if self._metrics is not None:
            self._metrics.counter("cadastre_writeback_targets_total").labels(
                tenant, target.connection, state.value
            ).inc()

    async def _prune_echoes(self) -> None:
        now = self._clock.now()
        if self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1):
            return
        self._pruned_at = now
        for tenant in await self._store.list_tenants():
            async with self._store.unit_of_work(tenant.id) as uow:
                await uow.writes.prune_echoes(before=now - self._echo_keep)
                await uow.commit()


def _outbound(target: WriteTarget) -> OutboundWrite:
    return OutboundWrite(
        write_id=target.write_id, key=target.key, entity=target.entity,
        canonical_id=target.canonical_id, external_id=target.external_id,
        operation=target.operation, fields=dict(target.fields), base_version=target.base_version,
    )  # fmt: skip


def _request(connector: TargetConnector, outbound: OutboundWrite) -> dict[str, Any]:
    """What shadow mode records: the connector's own rendering of the vendor request when it
    offers one (``preview``), else the outbound write itself."""
    preview = getattr(connector, "preview", None)
    if callable(preview):
        try:
            return dict(to_jsonable_python(preview(outbound)))
        except Exception as exc:  # noqa: BLE001 - a preview is informative only
            log.warning("write %s: preview failed: %s", outbound.write_id, exc)
    return {
        "key": outbound.key, "entity": outbound.entity, "operation": outbound.operation.value,
        "external_id": outbound.external_id, "fields": to_jsonable_python(dict(outbound.fields)),
        "base_version": outbound.base_version,
    }  # fmt: skip


def _idempotency(connector: TargetConnector, target: WriteTarget) -> Idempotency:
    return connector.idempotency(target.entity, target.operation)


def _same(a: Any, b: Any) -> bool:
    return bool(to_jsonable_python(a) == to_jsonable_python(b))


def _holds(receipt: WriteReceipt, fields: Mapping[str, Any]) -> bool:
    values = receipt.values
    return all(_same(values.get(name), value) for name, value in fields.items())


def _written(target: WriteTarget, receipt: WriteReceipt | None) -> dict[str, Any]:
    """The values the write leaves at the vendor: the receipt's for the fields we wrote (the
    vendor may normalise them), ours where it says nothing, and every other value the receipt
    reports. A vendor whose update reads, merges and sends the whole object (Buildium) reports
    the object after the write, which may hold a person's edit we have not heard of yet: its
    webhook will carry the receipt's version and be dropped as our echo, so the receipt is
    where we learn it."""
    if target.operation is WriteOperation.DELETE:
        return {}
    values = dict(receipt.values) if receipt is not None else {}
    if target.operation is WriteOperation.CREATE:
        return {**dict(target.fields), **values}
    return {**values, **{n: values.get(n, v) for n, v in target.fields.items()}}


def _change(
    tenant: str, target: WriteTarget, receipt: WriteReceipt | None, written: Mapping[str, Any]
) -> Change | None:
    external_id = receipt.external_id if receipt is not None else target.external_id
    if external_id is None:
        return None
    origin = Origin(
        system=target.system, connection=target.connection, external_id=external_id,
        source_version=receipt.source_version if receipt is not None else None,
        source_time=receipt.source_time if receipt is not None else None,
        causation_id=target.write_id,
    )  # fmt: skip
    key = f"{RECEIPT_KEY_PREFIX}{target.write_id}:{target.connection}"
    if target.operation is WriteOperation.DELETE:
        return Change(tenant=tenant, entity=target.entity, canonical_id=target.canonical_id,
                      operation=Operation.DELETE, origin=origin, idempotency_key=key)  # fmt: skip
    fields = dict(written.items())
    if not fields:
        return None
    return Change(tenant=tenant, entity=target.entity, canonical_id=target.canonical_id,
                  fields=fields, origin=origin, idempotency_key=key)  # fmt: skip


__all__ = ["ALERT_EVENT", "MAYBE_SENT", "WriteBackWorker"]
