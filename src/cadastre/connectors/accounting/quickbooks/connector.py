"""``QuickBooksConnector``: QuickBooks Online changes in as raw records, platform writes out.

Reads go by CDC (``GET /cdc?entities=<E>&changedSince=<cursor>``, one entity per stream): the
answer's ``time`` is the next cursor. An answer holding ``cdc_max`` (1,000) objects may have left
changes out, and QBO does not say; the window is then split: the next request starts at the
newest change the answer held (CDC's ``changedSince`` includes it, so the boundary is read
twice and recognised as a duplicate), until an answer is not full. When a full answer's newest
change is no later than its start (1,000 changes in one second), or the cursor is older than
CDC's 30 days (or there is none), the stream is read in full by ``/query`` pages keyed on
``Id`` (``where Id > 'n' orderby Id``; name lists with ``Active in (true, false)``, which a QBO
query otherwise leaves out), and the next CDC starts at the server time the full read began;
``full_reads`` says which streams were read so and why.

JournalEntry deletions arrive as an Id alone, and the LedgerEntries are its lines: the connector
remembers the line ids of the entries it has read (in memory), so a deletion (or an update that
drops lines) tombstones the lines it knows; ``keys("JournalEntryLine")`` lists every live line for
``cadastre reconcile``, which catches the rest (after a restart). A deletion whose lines this
process never read is not dropped in silence: it becomes a record with a ``problem`` (quarantined,
``unreadable``) naming the entry and the reconcile to run.

Name lists (Account) are never deleted in QuickBooks, only made inactive: a ``Deleted`` stub of
one (CDC, or a webhook's Delete/Merge) is read again by id, never made a tombstone.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cadastre.connectors.accounting.quickbooks.streams import (
    NAME_LISTS,
    STREAMS,
    deleted,
    line_key,
    records,
)
from cadastre.connectors.accounting.quickbooks.webhooks import read_notification
from cadastre.connectors.accounting.quickbooks.writes import QuickBooksWriter
from cadastre.errors import VendorProtocolError, VendorRejected
from cadastre.mapping.records import parse_time
from cadastre.ports import Idempotency, RawPage, RawRecord, WriteOperation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from datetime import datetime

    from cadastre.connectors.accounting.quickbooks.settings import QuickBooksSettings
    from cadastre.gateway import Gateway
    from cadastre.ports import Clock, OutboundWrite, WriteReceipt

log = logging.getLogger(__name__)
LINES_REMEMBERED = 100_000  # journal entries whose line ids are kept for their deletion


class QuickBooksConnector:
    system = "accounting"

    def __init__(
        self, settings: QuickBooksSettings, *, gateway: Gateway, clock: Clock,
        system: str = "accounting",
    ) -> None:  # fmt: skip
        self.system = system
        self._settings = settings
        self._gateway = gateway
        self._clock = clock
        self._company = f"{settings.base_url}/v3/company/{settings.realm_id}"
        self._lines: dict[str, tuple[str, ...]] = {}  # JournalEntry Id -> its line ids
        self._gone: dict[str, None] = {}  # JournalEntry Ids whose lines were tombstoned here
        self.full_reads: dict[str, str] = {}  # stream -> why the last read was a full one
        self._writer = QuickBooksWriter(self, settings)

    def __repr__(self) -> str:
        return f"QuickBooksConnector(realm={self._settings.realm_id!r})"

    def streams(self) -> Sequence[str]:
        return list(self._settings.streams)

    async def aclose(self) -> None:
        await self._gateway.aclose()

    # ---------------------------------------------------------------------------- calls

    async def call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        json: Any = None, headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One call to the company; the JSON object it answers."""
        query = {**(params or {}), "minorversion": str(self._settings.minor_version)}
        url = f"{self._company}/{path}"
        if method == "GET":
            body = await self._gateway.get_json(url, params=query, headers=headers)
        else:
            response = await self._gateway.request(
                method, url, params=query, json=json,
                headers={"Accept": "application/json", **(headers or {})},
            )  # fmt: skip
            try:
                import orjson

                body = orjson.loads(response.content)
            except ValueError:
                raise VendorProtocolError(f"QuickBooks {method} {path}: not JSON") from None
        if not isinstance(body, dict):
            raise VendorProtocolError(f"QuickBooks {method} {path}: not a JSON object")
        return body

    async def fetch(self, entity: str, object_id: str) -> dict[str, Any] | None:
        """The object as QBO holds it now; None when it is gone (Object Not Found is a 400)."""
        try:
            body = await self.call("GET", f"{entity.lower()}/{object_id}")
        except VendorRejected as exc:
            if exc.status in (400, 404):
                return None
            raise
        found = body.get(entity)
        return found if isinstance(found, dict) else None

    # ---------------------------------------------------------------------------- reads

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        self.full_reads.pop(stream, None)
        since = parse_time(cursor.get("changedSince")) if cursor else None
        if cursor and cursor.get("full"):
            self.full_reads[stream] = "resuming a full read"
            async for page in self._full(stream, cursor):
                yield page
            return
        if since is None or self._too_old(since):
            why = "first read" if since is None else "cursor older than CDC's look-back"
            self.full_reads[stream] = why
            if since is not None:
                log.warning("QuickBooks %s: %s (%s); reading it in full", stream, why, since)
            async for page in self._full(stream, None):
                yield page
            return
        async for page in self._cdc(stream, since):
            yield page

    def _too_old(self, since: datetime) -> bool:
        s = self._settings
        limit = timedelta(days=s.cdc_days) - timedelta(seconds=s.cdc_margin_seconds)
        return self._clock.now() - since > limit

    async def _cdc(self, stream: str, since: datetime) -> AsyncIterator[RawPage]:
        entity = STREAMS[stream]
        while True:
            params = {"entities": entity, "changedSince": since.isoformat()}
            try:
                body = await self.call("GET", "cdc", params=params)
            except VendorRejected:
                # Refused (too old by the vendor's clock): the full read is the way back.
                self.full_reads[stream] = "CDC refused the cursor"
                async for page in self._full(stream, None):
                    yield page
                return
            objects = _cdc_objects(body, entity)
            server_time = body.get("time")
            found = self._page(stream, await self.name_list_stubs(entity, objects))
            if len(objects) < self._settings.cdc_max:
                if not isinstance(server_time, str) or parse_time(server_time) is None:
                    raise VendorProtocolError("QuickBooks CDC answered without a time")
                yield RawPage(stream, found, {"changedSince": server_time})
                return
            times = [t for t in map(_time_of, objects) if t is not None]
            newest = max(times, default=None)
            if newest is None or newest <= since:
                self.full_reads[stream] = f"{len(objects)} changes at one instant"
                log.warning("QuickBooks %s: a full CDC answer cannot advance; full read", stream)
                async for full in self._full(stream, None):
                    yield full
                return
            # A full answer: split the window at its newest change and ask again from there.
            yield RawPage(stream, found, {"changedSince": newest.isoformat()})
            since = newest

    async def _full(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        entity = STREAMS[stream]
        after = str(cursor.get("after", "0")) if cursor else "0"
        started = cursor.get("started") if cursor else None
        size = self._settings.page_size
        while True:
            body = await self.call(
                "GET", "query", params={"query": _page_query(entity, after, size)}
            )
            if started is None:
                started = body.get("time")
            answer = body.get("QueryResponse")
            objects = answer.get(entity, []) if isinstance(answer, dict) else None
            if not isinstance(objects, list):
                raise VendorProtocolError(f"QuickBooks query of {entity}: no QueryResponse list")
            page = self._page(stream, objects)
            if len(objects) < size:
                if not isinstance(started, str):
                    raise VendorProtocolError("QuickBooks query answered without a time")
                yield RawPage(stream, page, {"changedSince": started})
                return
            after = str(objects[-1].get("Id", after))
            yield RawPage(stream, page, {"full": True, "after": after, "started": started})

    async def name_list_stubs(self, entity: str, objects: list[Any]) -> list[Any]:
        """A name list's ``Deleted`` stubs replaced by the objects read again by id (an Account
        is only ever made inactive); other entities' objects as they are."""
        if entity not in NAME_LISTS:
            return objects
        found: list[Any] = []
        for obj in objects:
            if isinstance(obj, dict) and obj.get("status") == "Deleted":
                fresh = await self.fetch(entity, str(obj.get("Id", "")))
                if fresh is not None:
                    found.append(fresh)
                continue
            found.append(obj)
        return found

    def _page(self, stream: str, objects: list[Any]) -> list[RawRecord]:
        found: list[RawRecord] = []
        for obj in objects:
            if isinstance(obj, dict) and obj.get("status") == "Deleted":
                found.extend(self._deleted(stream, obj))
                continue
            got = records(stream, obj)
            if stream == "JournalEntryLine" and isinstance(obj, dict) and obj.get("Id"):
                found.extend(self._dropped_lines(str(obj["Id"]), got, obj))
            found.extend(got)
        return found

    def _deleted(self, stream: str, obj: dict[str, Any]) -> list[RawRecord]:
        oid = str(obj.get("Id", ""))
        meta = obj.get("MetaData")
        when = meta.get("LastUpdatedTime") if isinstance(meta, dict) else None
        if stream != "JournalEntryLine":
            return [deleted(stream, oid, when)]
        lines = self._lines.pop(oid, ())
        if oid in self._gone:  # the same deletion again (a duplicate event, a CDC boundary)
            return []
        self._gone[oid] = None
        if len(self._gone) > LINES_REMEMBERED:
            self._gone.pop(next(iter(self._gone)))
        if not lines:
            log.warning("QuickBooks JournalEntry %s deleted; its lines are unknown here", oid)
            why = (
                f"QuickBooks deleted JournalEntry {oid}, whose lines this process never read "
                "(line ids are remembered in memory only): run `cadastre reconcile <connection> "
                "--stream JournalEntryLine` to reverse its LedgerEntries"
            )
            return [RawRecord(stream, oid, {"Id": oid, "status": "Deleted"}, parse_time(when),
                              problem=why)]  # fmt: skip
        return [deleted(stream, line_key(oid, line), when) for line in lines]

    def _dropped_lines(
        self, oid: str, got: list[RawRecord], obj: dict[str, Any]
    ) -> list[RawRecord]:
        """Tombstones of the lines an update removed (QBO replaces Line arrays wholesale)."""
        now = tuple(r.external_id.split(":", 1)[1] for r in got if r.external_id)
        before = self._lines.get(oid, ())
        if len(self._lines) >= LINES_REMEMBERED and oid not in self._lines:
            self._lines.pop(next(iter(self._lines)))
        self._lines[oid] = now
        meta = obj.get("MetaData")
        when = meta.get("LastUpdatedTime") if isinstance(meta, dict) else None
        return [deleted("JournalEntryLine", line_key(oid, line), when)
                for line in before if line not in now]  # fmt: skip

    async def keys(self, stream: str) -> AsyncIterator[Sequence[str]]:
        """Every live key of ``stream`` (reconciliation); journal entries as their lines."""
        entity = STREAMS[stream]
        after, size = "0", self._settings.page_size
        while True:
            body = await self.call(
                "GET", "query", params={"query": _page_query(entity, after, size)}
            )
            answer = body.get("QueryResponse")
            objects = answer.get(entity, []) if isinstance(answer, dict) else []
            keys = [r.external_id for obj in objects for r in records(stream, obj) if r.external_id]
            if keys:
                yield keys
            if len(objects) < size:
                return
            after = str(objects[-1].get("Id", after))

    # ------------------------------------------------------------------------- webhooks

    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> Sequence[RawRecord]:
        """A verified Intuit notification (CloudEvents or legacy) as raw records."""
        return await read_notification(self, body, realm=self._settings.realm_id)

    # ---------------------------------------------------------------------------- writes

    def writable(self) -> Mapping[str, frozenset[str]]:
        return self._writer.writable()

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        return self._writer.idempotency(entity, operation)

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        return await self._writer.write(write)

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        return await self._writer.read_back(write)


def _page_query(entity: str, after: str, size: int) -> str:
    # ``after`` is an Id QBO gave us (digits), never outside input.
    active = " and Active in (true, false)" if entity in NAME_LISTS else ""
    return f"select * from {entity} where Id > '{after}'{active} orderby Id maxresults {size}"  # noqa: S608


def _cdc_objects(body: dict[str, Any], entity: str) -> list[Any]:
    found: list[Any] = []
    for response in body.get("CDCResponse") or []:
        if not isinstance(response, dict):
            continue
        for answer in response.get("QueryResponse") or []:
            if isinstance(answer, dict) and isinstance(answer.get(entity), list):
                found.extend(answer[entity])
    if "CDCResponse" not in body:
        raise VendorProtocolError("QuickBooks CDC answered without a CDCResponse")
    return found


def _time_of(obj: Any) -> datetime | None:
    meta = obj.get("MetaData") if isinstance(obj, dict) else None
    return parse_time(meta.get("LastUpdatedTime")) if isinstance(meta, dict) else None
