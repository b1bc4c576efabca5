"""Mass updates: when an MLS touches every record's timestamp at once, an incremental sync holds
the whole feed. The connector notices (the vendor's count of the read against its total), paces
its requests so the bump takes a bounded share of the vendor's rate budget and other connections
at the same vendor keep their turn, and says so; this module turns what it said into the
``cadastre.sync.mass_update.v1`` event, written to the outbox, and a log line.

Also here: a stream that a sync could not read past (the vendor keeps sending an unreadable page;
the runner quarantined it whole and held the cursor before it) raises an alert each run, since
nothing after that page arrives until the vendor mends it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cadastre.contract import Origin
from cadastre.contract.events import EventEnvelope
from cadastre.sync.origin import event_source

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.ports import Clock, Store

log = logging.getLogger(__name__)

MASS_UPDATE_EVENT = "cadastre.sync.mass_update.v1"
ALERT_EVENT = "cadastre.alert.raised.v1"


async def report_unread_streams(
    store: Store, clock: Clock, *, tenant: str, connection: str, system: str,
    unread: Mapping[str, str],
) -> None:  # fmt: skip
    """One alert per stream the sync could not read past (``SyncReport.unread``: stream ->
    why), so a stream held by a page the vendor keeps garbling does not stall in silence."""
    if not unread:
        return
    origin = Origin(system=system, connection=connection)
    async with store.unit_of_work(tenant) as uow:
        for stream, why in sorted(unread.items()):
            await uow.outbox.add(EventEnvelope(
                source=event_source(origin), type=ALERT_EVENT, subject=connection,
                time=clock.now(), tenant=tenant,
                data={
                    "alert": "stream_held_by_unreadable_page", "severity": "warning",
                    "connection": connection, "stream": stream,
                    "summary": f"{connection} {stream}: nothing after an unreadable page can be "
                    f"read ({why}); the cursor waits before it",
                    "action": "ask the vendor to mend the page; `cadastre quarantine list "
                    f"--connection {connection} --code malformed_page` shows its body, and "
                    "the next sync reads on once it parses",
                },
            ))  # fmt: skip
            log.warning("%s %s held by an unreadable page: %s", connection, stream, why)
        await uow.commit()


async def report_mass_updates(
    store: Store,
    clock: Clock,
    *,
    tenant: str,
    connection: str,
    system: str,
    updates: Mapping[str, Any],
    seconds: float,
) -> list[dict[str, Any]]:
    """One event per stream that had a mass update; ``updates`` maps stream -> an object with
    ``changed``, ``total`` and ``page_seconds`` (the connector's ``MassUpdate``). What was
    reported, as the events' data."""
    reported: list[dict[str, Any]] = []
    if not updates:
        return reported
    origin = Origin(system=system, connection=connection)
    async with store.unit_of_work(tenant) as uow:
        for stream, update in sorted(updates.items()):
            data = {
                "connection": connection, "stream": stream, "changed": update.changed,
                "total": update.total, "page_seconds": update.page_seconds,
                "sync_seconds": round(seconds, 3),
            }  # fmt: skip
            await uow.outbox.add(EventEnvelope(
                source=event_source(origin), type=MASS_UPDATE_EVENT, subject=connection,
                time=clock.now(), tenant=tenant, data=data,
            ))  # fmt: skip
            log.warning(
                "mass update on %s %s: %s of %s records changed at once; replicated throttled "
                "(one request per %g s) in %.1f s",
                connection, stream, update.changed, update.total, update.page_seconds, seconds,
            )  # fmt: skip
            reported.append(data)
        await uow.commit()
    return reported
