"""Mapping coverage per MLS: for each connection and stream, how the mapping files the
connection's syncs would load now cover what its vendor has sent (the stream's schema snapshot:
every field and enumeration value seen across syncs). ``mapping.coverage.snapshot_coverage``
says what "covered" means; rows are grouped by mapping file, which is what names an MLS.

A connection whose mapping cannot be loaded (a broken or missing file) gets a row saying so,
rather than taking the page down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadastre.connectors import connector_spec
from cadastre.errors import CadastreError
from cadastre.mapping.coverage import snapshot_coverage

if TYPE_CHECKING:
    from cadastre.bootstrap import Hub
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Connection


@dataclass(frozen=True)
class StreamCoverage:
    tenant: str
    connection: str
    mapping: str  # the mapping file's name (the MLS); "" when it could not be loaded
    stream: str
    taken_at: datetime | None = None  # the snapshot's; None before the first sync
    report: dict[str, Any] = field(default_factory=dict)  # snapshot_coverage(); {} without one
    problem: str = ""


def mappers_of(hub: Hub, connection: Connection) -> dict[str, RecordMapper]:
    """The connection's mappers by stream, loaded from the current files as its syncs load them
    (``Hub.open_source``), without opening its connector."""
    spec = connector_spec(connection.connector)
    settings = spec.settings(connection.name, connection.config)
    mapper = hub.mappings.load(spec.mapping_name(settings))
    mappers = {mapper.stream: mapper}
    for stream, entry in spec.stream_mappings(settings).items():
        mappers[stream] = hub.mappings.load(entry)
    return mappers


async def coverage(hub: Hub, tenant: str) -> list[StreamCoverage]:
    rows: list[StreamCoverage] = []
    for connection in await hub.connections.all(tenant):
        try:
            mappers = mappers_of(hub, connection)
        except CadastreError as exc:
            rows.append(StreamCoverage(tenant, connection.name, "", "", problem=str(exc)))
            continue
        except OSError as exc:  # a mapping file that cannot be read
            problem = f"cannot read a mapping file: {exc.strerror or type(exc).__name__}"
            rows.append(StreamCoverage(tenant, connection.name, "", "", problem=problem))
            continue
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            for stream, mapper in mappers.items():
                snapshot = await uow.schemas.get(connection.name, stream)
                name = mapper.spec.mapping
                if snapshot is None:
                    rows.append(StreamCoverage(tenant, connection.name, name, stream))
                    continue
                report = snapshot_coverage(mapper, snapshot.seen_fields, snapshot.seen_values)
                rows.append(
                    StreamCoverage(tenant, connection.name, name, stream, snapshot.taken_at, report)
                )
    return sorted(rows, key=lambda r: (r.mapping, r.connection, r.stream))
