"""``HubSpotConnector``: HubSpot CRM objects (contacts, deals) in as raw records, canonical writes
out (``writes.py``), pushed events read (``webhooks.py``).

A full read (no cursor) pages the object list by its ``after`` cursor, 100 at a time, in id
order; its pages' cursor holds that ``after`` (a crash resumes there) and the time the read began
(less the overlap), which the read's last page leaves for the next, incremental, read.

An incremental read searches on the last-modified property (``lastmodifieddate``,
``hs_lastmodifieddate`` for deals), oldest first. HubSpot's search pages by offset and never past
10,000 results of one query, and a record changed mid-read moves behind the others and shifts
them; so every page is a query of its own, anchored where the last one ended (``GTE`` the last
timestamp, passing over the records already read at it, known by id and modification time): the
window is one page long, can never reach the cap, and a record changed meanwhile is read again
later, never skipped. The cursor is that anchor ``{"since", "seen"}``; every read starts
``overlap_seconds`` (120) before it, where changes the search index shows late land.
Searches are spaced ``search_interval`` apart (HubSpot allows 4 a second) and carry an
``Idempotency-Key`` header: a search is a read, and the gateway resends a POST only with one.

A contact that lists merged ids (``hs_merged_object_ids``) comes with a merge record for each,
``RawRecord(merged_into=...)``, which identity resolution applies once (re-pointing is
idempotent).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cadastre.connectors.crm.hubspot.streams import KEY, MERGED_IDS, STREAMS, Stream, flat
from cadastre.connectors.crm.hubspot.webhooks import read_events
from cadastre.connectors.crm.hubspot.writes import HubSpotWrites
from cadastre.errors import VendorProtocolError
from cadastre.mapping.records import parse_time, raw_record
from cadastre.ports import RawPage, RawRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence, Set

    from cadastre.connectors.crm.hubspot.settings import HubSpotSettings
    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock

log = logging.getLogger(__name__)


class HubSpotConnector(HubSpotWrites):
    def __init__(
        self, settings: HubSpotSettings, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> None:
        super().__init__(settings, gateway=gateway, clock=clock)
        self.system = "crm"
        self._mapper = mapper

    def streams(self) -> Sequence[str]:
        return list(self._settings.streams)

    async def aclose(self) -> None:
        await self._gateway.aclose()

    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> Sequence[RawRecord]:
        """A verified batch of HubSpot events as raw records (``webhooks.py``)."""
        wanted: dict[str, Stream] = {name: STREAMS[name] for name in self._settings.streams}
        return await read_events(body, streams=wanted, fetch=self.batch_read)

    # --------------------------------------------------------------------------- reading

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        kind = STREAMS[stream]
        if cursor is None or "after" in cursor or "since" not in cursor:
            async for page in self._list(kind, cursor):
                yield page
            return
        async for page in self._search(kind, cursor):
            yield page

    async def _list(self, kind: Stream, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        began = (cursor or {}).get("began")
        if not isinstance(began, str):
            began = self._clock.now().isoformat()
        after = (cursor or {}).get("after")
        params: dict[str, str] = {"limit": str(self._settings.page_size),
                                  "properties": ",".join(kind.properties)}  # fmt: skip
        while True:
            query = {**params, "after": str(after)} if after else params
            body = await self._gateway.get_json(f"{self._base}{kind.path}", params=query)
            items, after = _results(body), _next_after(body)
            records = self._records(kind, items)
            if after is None:  # the read's end: the next one searches from its start
                yield RawPage(kind.name, records, {"since": began, "seen": []})
                return
            yield RawPage(kind.name, records, {"after": after, "began": began})

    async def _search(self, kind: Stream, cursor: Mapping[str, Any]) -> AsyncIterator[RawPage]:
        since = parse_time(cursor.get("since"))
        if since is None:
            raise VendorProtocolError(f"{kind.name}: the cursor's since is not a time")
        # (id, modified) of what was read: the cursor's ids at its instant, then this read's at
        # its anchor. An id read at one instant and changed since is a new change, read again.
        done = {(str(i), since) for i in cursor.get("seen", []) if isinstance(i, str | int)}
        # Every read starts before its cursor, where late search-index entries land; records
        # read again come back as duplicates (the engine passes over a version it holds).
        anchor = since - timedelta(seconds=self._settings.overlap_seconds)
        while True:
            millis = int(anchor.timestamp() * 1000)
            body = await self.search(kind, {
                "filterGroups": [{"filters": [
                    {"propertyName": kind.modified, "operator": "GTE", "value": str(millis)}]}],
                "sorts": [{"propertyName": kind.modified, "direction": "ASCENDING"}],
                "properties": list(kind.properties), "limit": self._settings.search_page_size,
            })  # fmt: skip
            items = _results(body)
            records = self._records(kind, items, skip=done)
            read = {(i, t) for r in records
                    if (i := r.external_id) is not None and (t := r.source_time) is not None
                    and r.merged_into is None}  # fmt: skip
            if read:
                anchor = max(anchor, max(t for _, t in read))
                done = {(i, t) for i, t in done | read if t >= anchor}
            mark = max(since, anchor)  # the cursor never moves back, whatever was re-read
            cursor_value = {"since": mark.isoformat(),
                            "seen": sorted({i for i, t in done if t == mark})}  # fmt: skip
            if records and not read and len(items) >= self._settings.search_page_size:
                # a whole page without a readable time: the anchor cannot move
                raise VendorProtocolError(
                    f"{kind.name}: a search page of records without a {kind.modified}"
                )
            if not records:
                if len(items) >= self._settings.search_page_size:
                    # A whole page of records already read, all at one instant: cannot go on.
                    raise VendorProtocolError(
                        f"{kind.name}: more than {len(items)} records modified at "
                        f"{anchor.isoformat()}; the search cannot page past them"
                    )
                yield RawPage(kind.name, [], cursor_value)
                return
            yield RawPage(kind.name, records, cursor_value, body.get("total"))
            if len(items) < self._settings.search_page_size:
                return

    async def keys(self, stream: str) -> AsyncIterator[Sequence[str]]:
        """Every live id of the stream (the list pages, asking for the id alone): the
        reconciliation that finds records archived upstream whose webhook never came."""
        kind = STREAMS[stream]
        after: str | None = None
        params = {"limit": "100", "properties": KEY}
        while True:
            query = {**params, "after": after} if after else params
            body = await self._gateway.get_json(f"{self._base}{kind.path}", params=query)
            page = [str(i["id"]) for i in _results(body) if isinstance(i, dict) and i.get("id")]
            if page:
                yield page
            after = _next_after(body)
            if after is None:
                return

    def _records(
        self, kind: Stream, items: list[Any], *, skip: Set[tuple[str, datetime]] = frozenset()
    ) -> list[RawRecord]:
        """Raw records of ``items`` (each contact's merge records first), passing over the
        (id, modified) pairs of ``skip``."""
        out: list[RawRecord] = []
        for item in items:
            data = flat(kind, item)
            record = raw_record(kind.name, data, KEY, kind.modified)
            if (record.external_id, record.source_time) in skip:
                continue
            out.extend(merges_of(kind, record))
            out.append(record)
        return out


def merges_of(kind: Stream, record: RawRecord) -> list[RawRecord]:
    """The merge records a contact announces through ``hs_merged_object_ids``."""
    if record.external_id is None or not isinstance(record.data, dict):
        return []
    listed = record.data.get(MERGED_IDS)
    if not isinstance(listed, str) or not listed:
        return []
    return [merge_record(kind, merged, record.external_id, record.source_time,
                         record.source_version)
            for merged in dict.fromkeys(i.strip() for i in listed.split(";"))
            if merged and merged != record.external_id]  # fmt: skip


def merge_record(
    kind: Stream, merged: str, survivor: str, when: Any, version: str | None,
    extra: Mapping[str, Any] | None = None,
) -> RawRecord:  # fmt: skip
    data = {KEY: merged, kind.modified: version, **(extra or {})}
    return RawRecord(kind.name, merged, data, when, version, merged_into=survivor)


def _results(body: Any) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise VendorProtocolError("the answer is not a HubSpot collection (no results list)")
    return list(body["results"])


def _next_after(body: Any) -> str | None:
    paging = body.get("paging") if isinstance(body, dict) else None
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    return str(after) if after not in (None, "") else None


def new_key() -> str:
    return str(uuid.uuid4())
