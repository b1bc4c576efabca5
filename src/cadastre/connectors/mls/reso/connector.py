"""``ResoConnector``: RESO Web API (OData v4) pages in, raw records out.

Each read learns the resource's fields from ``$metadata`` (so ``$select`` asks only for fields the
server has now and the mapping uses), then pages with ``$orderby=ModificationTimestamp,ListingKey``
through ``@odata.nextLink`` (or, with ``paging: keyset``, by building each next query from the last
key); an empty page that still links on is followed, at most ``empty_pages`` in a row.
Transient failures (5xx, timeouts) raise and the runner reads again from the last committed
page. A page that cannot be read (not JSON, an HTML error page, not an OData collection) is asked
for again ``page_attempts`` times, then handed on as an unreadable ``RawPage`` (its body kept for
the quarantine, the cursor where it was) and the read ends there: without that page there is no
next link to follow. An item that is not a record is passed on with a ``problem``, never dropped.

Media come with the listings of each page (``media: expand`` nests them, ``media: resource`` asks
the Media resource for them), only for listings whose ``PhotosChangeTimestamp`` is at or after
the read's start, so one page carries Property and Media records. An incremental read that holds
most of the MLS at once (a mass timestamp bump) is paced; see ``MassUpdate``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import orjson

from cadastre.connectors.mls.reso.metadata import parse_schema
from cadastre.connectors.mls.reso.streams import (
    MEDIA_KEY,
    MEDIA_PARENT,
    MEDIA_TIME,
    PHOTOS_TIME,
    Position,
    any_of,
    first_filter,
    odata_string,
)
from cadastre.connectors.mls.reso.webhooks import entity_reader, read_notification
from cadastre.connectors.sdk import MassUpdate
from cadastre.errors import VendorError, VendorProtocolError, VendorRejected
from cadastre.mapping.records import parse_time, raw_record
from cadastre.ports import RawPage, RawRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from datetime import datetime

    from cadastre.connectors.mls.reso.settings import ResoSettings
    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, StreamSchema

log = logging.getLogger(__name__)

RAW_LIMIT = 256 * 1024  # of an unreadable page's body, kept for the quarantine
DEFAULT_OVERLAP = 300.0
METADATA_TTL = 60.0  # seconds a $metadata document is used again (not across syncs)


class _Unreadable:
    def __init__(self, problem: str, raw: str) -> None:
        self.problem = problem
        self.raw = raw


_Collection = tuple[list[Any], str | None, int | None]


class ResoConnector:
    def __init__(
        self,
        settings: ResoSettings,
        *,
        gateway: Gateway,
        mapper: RecordMapper,
        clock: Clock,
        system: str = "mls",
    ) -> None:
        self.system = system
        self._settings = settings
        self._gateway = gateway
        self._mapper = mapper
        self._clock = clock
        self._origin = _origin(settings.base_url)
        self._offered: frozenset[str] | None = None
        self._document: tuple[float, bytes] | None = None  # (when read, $metadata)
        self._pace: float = 0.0  # seconds between requests while a mass update is replicated
        self._next_request: float | None = None
        # The last read's mass update, by stream (empty when the read was an ordinary one).
        self.mass_updates: dict[str, MassUpdate] = {}
        self._unfinished: set[str] = set()  # streams whose last read stopped short (an error)
        self._total_refused = False  # the vendor refused a `$top=0` total (logged once)

    def streams(self) -> Sequence[str]:
        return [self._settings.resource]

    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> Sequence[RawRecord]:
        """A verified push notification (RESO EntityEvents) as raw records: ``webhooks.py``."""
        settings, mapper = self._settings, self._mapper
        return await read_notification(
            body, resource=settings.resource, key_field=mapper.key, time_field=mapper.timestamp,
            fetch=entity_reader(self._gateway, settings.base_url, settings.resource),
            now=self._clock.now,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._gateway.aclose()

    # ------------------------------------------------------------------------------- schema

    async def describe(self, stream: str) -> StreamSchema | None:
        """The stream's declared schema from ``$metadata``; None when the server does not say.
        A document read in the last minute is used again: a sync reads it when it starts, and
        the drift check after it describes each of its streams."""
        document = await self._metadata(fresh=False)
        return parse_schema(document, stream) if document is not None else None

    async def offered_fields(self) -> frozenset[str] | None:
        """The resource's property names from ``$metadata``; None when the server does not say
        (then ``$select`` is left out and every field comes back)."""
        if self._offered is None:
            await self._metadata(fresh=False)
        return self._offered or None

    async def _metadata(self, *, fresh: bool) -> bytes | None:
        now = self._clock.monotonic()
        if not fresh and self._document is not None and now - self._document[0] < METADATA_TTL:
            return self._document[1]
        try:
            response = await self._gateway.get(f"{self._settings.base_url}/$metadata")
        except VendorError:
            return None
        self._document = (now, response.content)
        schema = parse_schema(response.content, self._settings.resource)
        self._offered = frozenset(schema.fields) if schema is not None else frozenset()
        return response.content

    # -------------------------------------------------------------------------------- keys

    async def keys(self, stream: str) -> AsyncIterator[Sequence[str]]:
        """Every key the MLS serves now, a page at a time, by keyset paging (never through
        ``@odata.nextLink``, which many servers make offset-based: an item changed during the
        listing moves to the end and shifts the rest, so one key would be skipped and look
        deleted). The main resource is walked in key order on the key alone, so records changing
        meanwhile neither shift nor repeat keys; Media (whose order servers fix by timestamp) on
        (MediaModificationTimestamp, MediaKey), so a photo changed meanwhile is seen twice at
        worst, never skipped.

        MLS Grid style feeds (``MlgCanView``) list hidden records too: they are still upstream,
        and replication's ``deletion`` rule tombstones them; a key that vanishes altogether is the
        reconciliation's to delete."""
        settings = self._settings
        main = stream == settings.resource
        key = self._mapper.key if main else MEDIA_KEY
        top = settings.keys_page_size or settings.page_size
        order = key if main else f"{MEDIA_TIME},{MEDIA_KEY}"
        select = key if main else f"{MEDIA_KEY},{MEDIA_TIME}"
        params = {"$select": select, "$top": str(top), "$orderby": order}
        base = f"{settings.base_url}/{stream}"
        url: str = base
        query: dict[str, str] | None = params
        while True:
            fetched = await self._fetch(url, query)
            if isinstance(fetched, _Unreadable):
                # Half a key list would look like mass deletions: refuse the whole of it.
                raise VendorProtocolError(f"keys of {stream}: {fetched.problem}")
            items, next_link, _ = fetched
            page = [str(k) for item in items if isinstance(item, dict)
                    if (k := item.get(key)) is not None and str(k).strip()]  # fmt: skip
            if page:
                yield page
            # A list must not end early (the keys after it would look deleted): items without
            # a key are passed over, never taken for the end.
            if not items:
                if main or next_link is None:
                    return
                raise VendorProtocolError(f"keys of {stream}: an empty page links on")
            if len(items) < top and next_link is None:
                return
            if main:
                if not page:  # keyset paging goes on from the last key, and this page has none
                    raise VendorProtocolError(f"keys of {stream}: a page of items without a key")
                # the server's order: `gt` filters by its collation
                url, query = base, {**params, "$filter": f"{key} gt {odata_string(page[-1])}"}
                continue
            last = _last_position(items, MEDIA_TIME, MEDIA_KEY)
            if last is not None:
                url, query = base, {**params, "$filter": last.after(MEDIA_TIME, MEDIA_KEY)}
            elif next_link is not None:  # nothing to go on from: the server's link, this once
                url, query = next_link, None
            else:
                raise VendorProtocolError(f"keys of {stream}: a page of items without a position")

    # ------------------------------------------------------------------------------- read

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        resumed = (  # an incremental read again, of a stream whose last read stopped short
            Position.of(cursor) is not None
            and stream in self._unfinished
            and stream in self.mass_updates
        )
        if resumed:
            # The runner reads again from its last committed page after a failure: the mass
            # update that read was replicating goes on, paced, and is reported as it began
            # (what is left of it may be under the share on its own).
            self._pace = self.mass_updates[stream].page_seconds
        else:
            self.mass_updates.pop(stream, None)
            self._pace = 0.0
        self._next_request = None
        self._unfinished.add(stream)
        async for page in self._read(stream, cursor, check=not resumed):
            yield page
        self._unfinished.discard(stream)  # read to its end: the next read is a new one

    async def _read(
        self, stream: str, cursor: Mapping[str, Any] | None, *, check: bool
    ) -> AsyncIterator[RawPage]:
        settings, mapper = self._settings, self._mapper
        start = Position.of(cursor)
        position = start
        expand = settings.media == "expand" and stream == settings.resource
        media = settings.media != "off" and stream == settings.resource
        params: dict[str, str] = {
            "$top": str(settings.expand_page_size if expand else settings.page_size),
            "$orderby": f"{mapper.timestamp},{mapper.key}",
            "$count": "true",
        }
        if settings.select:
            # Asked on every read: a field the MLS dropped since must not be $selected.
            await self._metadata(fresh=True)
            offered = self._offered or None
            if offered is not None:
                wanted = mapper.vendor_fields(offered)
                if media and PHOTOS_TIME in offered and PHOTOS_TIME not in wanted:
                    wanted.append(PHOTOS_TIME)
                params["$select"] = ",".join(wanted)
        if expand:
            params["$expand"] = settings.media_resource
        overlap = timedelta(seconds=self._overlap())
        where = first_filter(start, overlap, mapper.timestamp, mapper.key)
        if where is not None:
            params["$filter"] = where
        photos_after = start.time - overlap if start is not None else None
        url: str | None = f"{settings.base_url}/{stream}"
        query: dict[str, str] | None = params
        expected: int | None = None
        empty = 0  # empty pages in a row that still link on
        while url is not None:
            fetched = await self._fetch(url, query)
            held = position.cursor() if position is not None else dict(cursor or {})
            if isinstance(fetched, _Unreadable):
                yield RawPage(stream, [], held, expected, problem=fetched.problem, raw=fetched.raw)
                return
            items, next_link, count = fetched
            if expected is None:
                expected = count
                if check and start is not None and count is not None:
                    await self._check_mass_update(stream, count)
            records: list[RawRecord] = []
            nested: list[RawRecord] = []
            moved: list[str] = []
            for item in items:
                children = item.pop(settings.media_resource, None) if expand and isinstance(
                    item, dict) else None  # fmt: skip
                record = self._record(stream, item, mapper.key, mapper.timestamp)
                records.append(record)
                if not media or record.external_id is None:
                    continue
                if not _photos_moved(record.data, photos_after):
                    continue
                moved.append(record.external_id)
                if isinstance(children, list):
                    nested.extend(self._media(child, record.external_id) for child in children)
            last: Position | None = None  # where this page ends, for a keyset next query
            for record in records:
                if record.external_id is not None and record.source_time is not None:
                    last = Position(record.source_time, record.external_id)
                    # The committed cursor never moves back, e.g. over an overlap page.
                    position = last if position is None or last > position else position
            if media and not expand and moved:
                found = await self._media_of(moved)
                if isinstance(found, _Unreadable):
                    # The listings without their photos would look complete: read it all again.
                    yield RawPage(stream, [], held, expected, problem=found.problem, raw=found.raw)
                    return
                nested = found
            cursor_value = position.cursor() if position is not None else dict(cursor or {})
            yield RawPage(stream, [*records, *nested], cursor_value, expected)
            if not items:
                if next_link is None:
                    return
                # A vendor that filters after paging serves empty pages that link on: follow
                # them, but a run of them (served at the same place every read) would stall the
                # stream silently, so it ends the read as an unreadable page the runner reports.
                empty += 1
                if empty >= settings.empty_pages:
                    problem = (f"{urlsplit(next_link).path}: {empty} empty pages in a row "
                               "still link on")  # fmt: skip
                    yield RawPage(stream, [], cursor_value, expected, problem=problem,
                                  raw=next_link)  # fmt: skip
                    return
                url, query = next_link, None
                continue
            empty = 0
            if settings.paging == "keyset":
                if next_link is None or last is None:
                    return
                query = {**params, "$filter": last.after(mapper.timestamp, mapper.key)}
                query.pop("$count", None)
                url = f"{settings.base_url}/{stream}"
            else:
                url, query = next_link, None

    def _overlap(self) -> float:
        if self._settings.overlap_seconds is not None:
            return self._settings.overlap_seconds
        # The MLS's own rule (Spark: "replicate from last sync minus 20 minutes"), when its
        # mapping file states one.
        refresh = getattr(self._mapper.spec, "refresh", None)
        minutes = getattr(refresh, "overlap_minutes", None)
        if isinstance(minutes, int | float) and not isinstance(minutes, bool):
            return float(minutes) * 60
        return DEFAULT_OVERLAP

    async def _check_mass_update(self, stream: str, changed: int) -> None:
        settings = self._settings
        if changed < settings.mass_update_records:
            return
        try:
            total = await self._total(stream)
        except VendorRejected as exc:
            # A vendor that refuses `$top=0` (4xx): no total, so no mass-update detection for
            # this read; the read itself goes on. Said once per connector, not every sync.
            level = logging.DEBUG if self._total_refused else logging.WARNING
            self._total_refused = True
            log.log(level, "%s: the total ($top=0&$count=true) was refused (%s); mass-update "
                    "detection is off for this read", stream, exc)  # fmt: skip
            return
        if total is not None and changed < settings.mass_update_share * total:
            return
        update = MassUpdate(stream, changed, total, settings.mass_update_page_seconds)
        self.mass_updates[stream] = update
        self._pace = settings.mass_update_page_seconds
        log.warning(
            "mass update: %s of %s %s records changed since the last sync; replicating at one "
            "request per %g s",
            changed, total if total is not None else "?", stream, self._pace,
        )  # fmt: skip

    async def _total(self, stream: str) -> int | None:
        query = {"$top": "0", "$count": "true"}
        fetched = await self._fetch(f"{self._settings.base_url}/{stream}", query)
        return None if isinstance(fetched, _Unreadable) else fetched[2]

    async def _media_of(self, listings: list[str]) -> list[RawRecord] | _Unreadable:
        settings = self._settings
        url = f"{settings.base_url}/{settings.media_resource}"
        out: list[RawRecord] = []
        for i in range(0, len(listings), settings.media_batch):
            batch = listings[i : i + settings.media_batch]
            next_url: str | None = url
            query: dict[str, str] | None = {
                "$filter": any_of(MEDIA_PARENT, batch),
                "$orderby": f"{MEDIA_TIME},{MEDIA_KEY}",
                "$top": str(settings.page_size),
            }
            while next_url is not None:
                fetched = await self._fetch(next_url, query)
                if isinstance(fetched, _Unreadable):
                    return fetched
                items, link, _ = fetched
                out.extend(self._media(item, None) for item in items)
                next_url, query = (link, None) if items else (None, None)
        return out

    def _media(self, item: Any, parent: str | None) -> RawRecord:
        if isinstance(item, dict) and parent is not None:
            item.setdefault(MEDIA_PARENT, parent)
        time_field = MEDIA_TIME
        if isinstance(item, dict) and MEDIA_TIME not in item and "ModificationTimestamp" in item:
            time_field = "ModificationTimestamp"
        return self._record(self._settings.media_resource, item, MEDIA_KEY, time_field)

    # --------------------------------------------------------------------- one request

    async def _fetch(self, url: str, query: Mapping[str, str] | None) -> _Collection | _Unreadable:
        """One page: a collection, or what was wrong with it after ``page_attempts`` reads."""
        attempts = self._settings.page_attempts
        for attempt in range(1, attempts + 1):
            await self._wait_turn()
            response = await self._gateway.get(
                url, params=query, headers={"Accept": "application/json"}
            )
            content = response.content
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                kind = response.headers.get("content-type", "no content type")
                problem = f"the answer is not JSON ({len(content)} bytes, {kind})"
            else:
                self._gateway.note_shape(response, body)  # what the page looks like, not holds
                try:
                    return self._collection(body, str(response.url))
                except _NotACollection as exc:
                    problem = str(exc)
            where = urlsplit(url).path
            log.warning("%s: unreadable page (read %d of %d): %s", where, attempt, attempts,
                        problem)  # fmt: skip
            if attempt < attempts:
                await self._clock.sleep(float(attempt))
        raw = content[:RAW_LIMIT].decode("utf-8", errors="replace")
        return _Unreadable(f"{urlsplit(url).path}: {problem}", raw)

    async def _wait_turn(self) -> None:
        if self._pace <= 0:
            return
        now = self._clock.monotonic()
        if self._next_request is not None and self._next_request > now:
            await self._clock.sleep(self._next_request - now)
            now = self._clock.monotonic()
        self._next_request = now + self._pace

    def _collection(self, body: Any, request_url: str) -> _Collection:
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise _NotACollection("the answer is not an OData collection")
        next_link = body.get("@odata.nextLink")
        if next_link is not None:
            if not isinstance(next_link, str):
                raise VendorProtocolError("@odata.nextLink is not a URL")
            # A relative link (OData allows one) is relative to the request's URL.
            next_link = urljoin(request_url, next_link)
            if _origin(next_link) != self._origin:
                # Following a link to another host would hand it our token.
                raise VendorProtocolError("@odata.nextLink leaves the service")
        count = body.get("@odata.count")
        return body["value"], next_link, count if isinstance(count, int) else None

    def _record(self, stream: str, item: Any, key_field: str, time_field: str) -> RawRecord:
        return raw_record(stream, item, key_field, time_field)


class _NotACollection(Exception):
    pass


def _photos_moved(data: Mapping[str, Any], after: datetime | None) -> bool:
    if after is None:  # a full read takes every listing's media
        return True
    moved = parse_time(data.get(PHOTOS_TIME))
    # A listing that does not say is asked for. On the read's start itself counts as moved: a
    # listing sharing the cursor's timestamp, after its key, was not read (nor its photos).
    return moved is None or moved >= after


def _last_position(items: Sequence[Any], time_field: str, key_field: str) -> Position | None:
    """The (timestamp, key) of a page's last item that has both: where keyset paging goes on."""
    for item in reversed(items):
        if not isinstance(item, dict):
            continue
        stamp, key = parse_time(item.get(time_field)), item.get(key_field)
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if stamp is not None and isinstance(key, str) and key.strip():
            return Position(stamp, key)
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
