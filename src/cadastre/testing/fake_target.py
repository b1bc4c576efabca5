"""``FakeTargetConnector``: an in-memory vendor that takes writes, for testing write-back and for
connector authors checking their expectations of the ``TargetConnector`` port.

It records every write it is handed (``calls``), counts creates per idempotency key
(``creates``), fails on demand (``fail_next``: exceptions raised by the next calls, in order),
and can apply a write and then lose its answer (``lose_answers``: the next N writes take effect
and raise ``VendorUnavailable``, as a timeout after the vendor acted would). Its idempotency
behaviour is chosen per instance: ``KEY`` replays a repeated key's first answer, ``NATURAL``
upserts creates by ``natural_key`` (e.g. ``Email``), ``NONE`` does neither (a resent create makes
a second object). ``touch`` edits an object "in the vendor's UI".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cadastre.errors import VendorRejected, VendorUnavailable, WriteIndeterminate
from cadastre.ports import Clock, Idempotency, OutboundWrite, WriteOperation, WriteReceipt


@dataclass
class VendorObject:
    values: dict[str, Any]
    version: int = 1
    modified: datetime | None = None


@dataclass
class FakeTargetConnector:
    system: str = "crm"
    entities: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {
            "Contact": frozenset({"FirstName", "LastName", "Email", "MobilePhone", "Notes"})
        }
    )
    mode: Idempotency = Idempotency.KEY
    natural_key: str = "Email"
    versions: bool = True  # False: a vendor without versions (receipts carry none)
    clock: Clock | None = None
    objects: dict[str, VendorObject] = field(default_factory=dict)
    calls: list[OutboundWrite] = field(default_factory=list)
    creates: Counter[str] = field(default_factory=Counter)  # idempotency key -> objects created
    fail_next: list[Exception] = field(default_factory=list)
    lose_answers: int = 0
    read_backs: int = 0
    _replies: dict[str, WriteReceipt] = field(default_factory=dict)
    _next_id: int = 100

    # ------------------------------------------------------------------ the port

    def writable(self) -> Mapping[str, frozenset[str]]:
        return self.entities

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        return self.mode

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        self.calls.append(write)
        if self.fail_next:
            raise self.fail_next.pop(0)
        if self.mode is Idempotency.KEY and write.key in self._replies:
            return _replayed(self._replies[write.key])
        receipt = self._apply(write)
        if self.mode is Idempotency.KEY:
            self._replies[write.key] = receipt
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise VendorUnavailable("the vendor's answer was lost (timeout after it acted)")
        return receipt

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        self.read_backs += 1
        if write.external_id is not None:
            found = self.objects.get(write.external_id)
            return self._receipt(write.external_id, found) if found is not None else None
        matches = [
            (id, o) for id, o in self.objects.items()
            if all(o.values.get(n) == v for n, v in write.fields.items())
        ]  # fmt: skip
        if len(matches) > 1:
            raise WriteIndeterminate(f"{len(matches)} objects hold those values")
        return self._receipt(*matches[0]) if matches else None

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------------ the vendor's side

    def touch(self, external_id: str, **values: Any) -> WriteReceipt:
        """An edit made at the vendor, outside Cadastre."""
        found = self.objects[external_id]
        found.values.update(values)
        found.version += 1
        found.modified = self._now()
        return self._receipt(external_id, found)

    def _apply(self, write: OutboundWrite) -> WriteReceipt:
        fields = dict(write.fields)
        if write.operation is WriteOperation.CREATE:
            natural = fields.get(self.natural_key)
            if self.mode is Idempotency.NATURAL and natural is not None:
                for id, existing in self.objects.items():
                    if existing.values.get(self.natural_key) == natural:
                        return self._update(id, existing, fields)
            self._next_id += 1
            id = str(self._next_id)
            self.objects[id] = VendorObject(fields, 1, self._now())
            self.creates[write.key] += 1
            return self._receipt(id, self.objects[id])
        if write.external_id is None or write.external_id not in self.objects:
            raise VendorRejected(f"404: no object {write.external_id}", status=404)
        if write.operation is WriteOperation.DELETE:
            gone = self.objects.pop(write.external_id)
            return WriteReceipt(write.external_id, str(gone.version + 1), self._now(), {})
        return self._update(write.external_id, self.objects[write.external_id], fields)

    def _update(self, id: str, found: VendorObject, fields: dict[str, Any]) -> WriteReceipt:
        for name, value in fields.items():
            if value is None:
                found.values.pop(name, None)
            else:
                found.values[name] = value
        found.version += 1
        found.modified = self._now()
        return self._receipt(id, found)

    def _receipt(self, id: str, found: VendorObject) -> WriteReceipt:
        version = str(found.version) if self.versions else None
        return WriteReceipt(id, version, found.modified, dict(found.values))

    def _now(self) -> datetime | None:
        return self.clock.now() if self.clock is not None else None


def _replayed(receipt: WriteReceipt) -> WriteReceipt:
    return WriteReceipt(receipt.external_id, receipt.source_version, receipt.source_time,
                        receipt.values, replayed=True)  # fmt: skip
