"""Write-back to HubSpot (``TargetConnector``), and the calls reading shares with it.

- UPDATE: ``PATCH /crm/v3/objects/{type}/{id}`` with the changed properties only (HubSpot's
  update is partial: nothing else is touched, so no read-merge is needed). Sent with an
  ``Idempotency-Key`` (the write's key): sending the same properties twice is harmless, and the
  gateway resends a PATCH only with one. A merged id answers as its survivor: the receipt names
  the survivor's id.
- CREATE of a contact: ``batch/upsert`` by ``email`` (idempotency NATURAL: a resend finds the
  contact the first one made, so a lost answer never makes a second contact). A contact without
  an Email cannot be upserted and is refused.
- CREATE of a deal: ``POST`` (idempotency NONE: HubSpot has no key for it; the gateway never
  resends it, and after a crash ``read_back`` searches by ``dealname``).
- DELETE: ``DELETE`` = archive (restorable); one already archived (404) counts as done.
- ``read_back``: ``GET`` by id (merges followed; archived ones looked for when the write was a
  delete), else by natural field: the contact's email, the deal's name (several deals of one
  name: ``WriteIndeterminate``).

A receipt's ``source_version`` is the record's last-modified value as HubSpot answers it, the
same text a later read or webhook carries as the record's version, so the write-back's echo
suppression recognises our own write coming back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from cadastre.connectors.crm.hubspot.streams import (
    BY_ENTITY,
    CONTACTS,
    DEALS,
    Stream,
    canonical_value,
    flat,
    vendor_value,
)
from cadastre.errors import VendorProtocolError, VendorRejected, WriteIndeterminate
from cadastre.mapping.records import parse_time
from cadastre.ports import Idempotency, WriteOperation, WriteReceipt

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.connectors.crm.hubspot.settings import HubSpotSettings
    from cadastre.gateway import Gateway
    from cadastre.ports import Clock, OutboundWrite

BATCH = 100  # ids per batch read


class HubSpotWrites:
    def __init__(self, settings: HubSpotSettings, *, gateway: Gateway, clock: Clock) -> None:
        self._settings = settings
        self._gateway = gateway
        self._clock = clock
        self._base = settings.base_url
        self._search_lock = asyncio.Lock()
        self._next_search: float | None = None

    # ------------------------------------------------------------------- TargetConnector

    def writable(self) -> Mapping[str, frozenset[str]]:
        return {s.entity: frozenset(s.to_vendor) for s in (CONTACTS, DEALS)}

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        if entity == DEALS.entity and operation is WriteOperation.CREATE:
            return Idempotency.NONE
        # upsert by email, PATCH of the same properties, archive of an archived record: each
        # may be sent twice with one effect
        return Idempotency.NATURAL

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        kind = _stream(write.entity)
        props = _properties(kind, write.fields)
        if write.operation is WriteOperation.DELETE:
            return await self._archive(kind, write)
        if write.operation is WriteOperation.UPDATE:
            if write.external_id is None:
                raise VendorRejected(f"{kind.entity} update without a HubSpot id", None)
            item = await self._json("PATCH", f"{kind.path}/{write.external_id}",
                                    {"properties": props}, key=write.key)  # fmt: skip
            return self._receipt(kind, item, write.fields)
        if kind is CONTACTS:
            email = props.get("email")
            if not email:
                raise VendorRejected("a contact create needs an Email: HubSpot upserts by it", 422)
            body = {"inputs": [{"idProperty": "email", "id": email, "properties": props}]}
            answer = await self._json("POST", f"{kind.path}/batch/upsert", body, key=write.key)
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != 1:
                raise VendorProtocolError("batch/upsert answered without one result")
            return self._receipt(kind, results[0], write.fields)
        # A deal: no key HubSpot honours, so no Idempotency-Key (the gateway must not resend).
        item = await self._json("POST", kind.path, {"properties": props}, key=None)
        return self._receipt(kind, item, write.fields)

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        kind = _stream(write.entity)
        if write.external_id is not None:
            archived = write.operation is WriteOperation.DELETE
            item = await self._get(kind, write.external_id, archived=archived)
            if item is None and archived:
                item = await self._get(kind, write.external_id, archived=False)
            return None if item is None else self._receipt(kind, item, write.fields)
        props = _properties(kind, write.fields)
        by = "email" if kind is CONTACTS else "dealname"
        if not props.get(by):
            raise WriteIndeterminate(f"{kind.entity} create without {by}: nothing to find it by")
        body = await self.search(kind, {
            "filterGroups": [{"filters": [
                {"propertyName": by, "operator": "EQ", "value": props[by]}]}],
            "properties": list(kind.properties), "limit": 10,
        })  # fmt: skip
        found = body.get("results") if isinstance(body, dict) else None
        if not isinstance(found, list) or not found:
            return None
        if len(found) > 1:
            raise WriteIndeterminate(
                f"{len(found)} {kind.name} have {by} {props[by]!r}: which one the lost create "
                "made cannot be told"
            )
        return self._receipt(kind, found[0], write.fields)

    # ---------------------------------------------------------------- calls reading shares

    async def search(self, kind: Stream, body: Mapping[str, Any]) -> Any:
        """One search, spaced from this connector's others (HubSpot's lower search limit)."""
        async with self._search_lock:
            interval = self._settings.search_interval
            now = self._clock.monotonic()
            if self._next_search is not None and self._next_search > now:
                await self._clock.sleep(self._next_search - now)
                now = self._clock.monotonic()
            self._next_search = now + interval
        return await self._json("POST", f"{kind.path}/search", body, key=str(uuid.uuid4()))

    async def batch_read(self, kind: Stream, ids: Sequence[str]) -> list[Any]:
        """The objects of ``ids`` (merged ids answer as their survivor; archived ones are left
        out), in batches of 100."""
        out: list[Any] = []
        for i in range(0, len(ids), BATCH):
            body = {"inputs": [{"id": x} for x in ids[i : i + BATCH]],
                    "properties": list(kind.properties)}  # fmt: skip
            answer = await self._json("POST", f"{kind.path}/batch/read", body,
                                      key=str(uuid.uuid4()))  # fmt: skip
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list):
                raise VendorProtocolError("batch/read answered without a results list")
            out.extend(results)
        return out

    async def _get(self, kind: Stream, object_id: str, *, archived: bool) -> Any:
        params = {"properties": ",".join(kind.properties), "archived": str(archived).lower()}
        try:
            return await self._gateway.get_json(f"{self._base}{kind.path}/{object_id}",
                                                params=params)  # fmt: skip
        except VendorRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def _archive(self, kind: Stream, write: OutboundWrite) -> WriteReceipt:
        if write.external_id is None:
            raise VendorRejected(f"{kind.entity} delete without a HubSpot id", None)
        try:
            await self._gateway.request("DELETE", f"{self._base}{kind.path}/{write.external_id}")
        except VendorRejected as exc:
            if exc.status != 404:  # archived already (a resend, or an edit in HubSpot)
                raise
        return WriteReceipt(write.external_id, None, self._clock.now(), {})

    async def _json(self, method: str, path: str, body: Any, *, key: str | None) -> Any:
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = await self._gateway.request(method, f"{self._base}{path}", json=body,
                                               headers=headers)  # fmt: skip
        try:
            return response.json()
        except ValueError:
            raise VendorProtocolError(f"{method} {path} answered a body that is not JSON") from None

    def _receipt(self, kind: Stream, item: Any, written: Mapping[str, Any]) -> WriteReceipt:
        data = flat(kind, item)
        if not isinstance(data, dict) or not data.get("hs_object_id"):
            raise VendorProtocolError(f"{kind.name}: the answer is not a HubSpot object")
        version = data.get(kind.modified)
        if not isinstance(version, str):
            version = item.get("updatedAt") if isinstance(item, dict) else None
        values = {wire: canonical_value(prop, data.get(prop))
                  for wire, prop in kind.to_vendor.items() if wire in written}  # fmt: skip
        return WriteReceipt(
            external_id=str(data["hs_object_id"]),
            source_version=version if isinstance(version, str) else None,
            source_time=parse_time(version),
            values=values,
        )


def _stream(entity: str) -> Stream:
    try:
        return BY_ENTITY[entity]
    except KeyError:
        raise VendorRejected(f"HubSpot takes no {entity} writes", None) from None


def _properties(kind: Stream, fields: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(fields) - set(kind.to_vendor))
    if unknown:
        raise VendorRejected(f"HubSpot cannot write {kind.entity} field(s) {', '.join(unknown)}",
                             None)  # fmt: skip
    return {kind.to_vendor[wire]: vendor_value(wire, value) for wire, value in fields.items()}
