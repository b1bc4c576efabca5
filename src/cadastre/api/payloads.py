"""Payload classes: the fields an API key may not read.

An MLS withholds some fields from its IDX (public display) and VOW (registered consumer) feeds;
its mapping file says which (``payloads: {IDX: {exclude: [...]}}`` or ``include: [...]``). A field
of a stored record is withheld from a key of class IDX or VOW when the connection that last wrote
that field (the record's provenance) maps with a file that withholds it from that class: one
listing can hold fields from two MLSs with different rules. A ``full`` key reads everything.

Withheld fields are treated as absent, not refused: they are left out of every response and read
as null by ``$filter`` and ``$orderby``, so a filter cannot probe a withheld value, and a field one
MLS withholds still works for the records another MLS wrote (a refusal would have to be
all-or-nothing per field). When a connection's mapping cannot be read, its fields are withheld
from non-full keys (failing closed) and the hub logs why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadastre.connectors import connector_spec
from cadastre.errors import CadastreError
from cadastre.mapping import withheld_fields
from cadastre.ports import PayloadClass

if TYPE_CHECKING:
    from cadastre.bootstrap import Hub
    from cadastre.ports import FieldProvenance, StoredRecord, UnitOfWork

_log = logging.getLogger("cadastre.api.payloads")
_EVERYTHING = frozenset({"*"})  # a connection whose rules are unknown: withhold all it wrote


class PayloadPolicy:
    """One request's view: which fields each connection withholds from the key's class, read
    once per connection per request (mapping files are read on every sync too, so an edited
    file takes effect on the next request)."""

    def __init__(self, hub: Hub, tenant: str, payload: PayloadClass) -> None:
        self._hub = hub
        self._tenant = tenant
        self.payload = payload
        self._by_connection: dict[str, frozenset[str]] = {}

    @property
    def full(self) -> bool:
        return self.payload is PayloadClass.FULL

    async def withheld(self, connection: str) -> frozenset[str]:
        if connection not in self._by_connection:
            self._by_connection[connection] = await self._resolve(connection)
        return self._by_connection[connection]

    async def _resolve(self, connection: str) -> frozenset[str]:
        try:
            found = await self._hub.connections.get(self._tenant, connection)
            spec = connector_spec(found.connector)
            settings = spec.settings(connection, found.config)
            names = [spec.mapping_name(settings), *spec.stream_mappings(settings).values()]
            fields: set[str] = set()
            for name in names:
                fields |= withheld_fields(self._hub.mappings.resolve(name), self.payload)
            return frozenset(fields)
        except CadastreError as exc:
            _log.warning(
                "payload class %s: cannot read the mapping of connection %r (%s); withholding "
                "every field it wrote", self.payload.value, connection, exc,
            )  # fmt: skip
            return _EVERYTHING

    async def mask(
        self, uow: UnitOfWork, entity: str, records: Sequence[StoredRecord], *, key: str | None
    ) -> list[dict[str, Any]]:
        """Each record's data without the fields withheld from this class (``key`` stays)."""
        if self.full or not records:
            return [dict(r.data) for r in records]
        provenance = await uow.provenance.for_records(entity, [r.id for r in records])
        return [await self._masked(r.data, provenance.get(r.id, {}), key) for r in records]

    async def _masked(
        self, data: Mapping[str, Any], stamps: Mapping[str, FieldProvenance], key: str | None
    ) -> dict[str, Any]:
        out = {}
        for name, value in data.items():
            stamp = stamps.get(name)
            if stamp is not None and stamp.connection and name != key:
                withheld = await self.withheld(stamp.connection)
                if name in withheld or withheld is _EVERYTHING:
                    continue
            out[name] = value
        return out
