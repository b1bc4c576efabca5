"""``RetsConnector``: a RETS 1.x server's Search answers in, raw records out.

Login goes through the gateway like every call, so the vault's ``digest`` credential answers the
server's HTTP Digest challenge (``gateway.auth.Password``). The login's ``RETS-Session-ID`` cookie
and capability URLs are held by this connector, one session per connection, and sent on every
transaction. A transaction answered "Not logged in" (reply code 20701: the session expired or the
server restarted) logs in once more and is sent again; a second 20701 right after a fresh login
is the server refusing us (``VendorAuthRefused``).

Reads walk DMQL2 time windows (see ``streams``). A reply that is no RETS reply at all ends the read
with an unreadable page (quarantined with its body; the cursor stays where the last good window
left it); a row that cannot be read is passed on with a ``problem`` so it is quarantined, never
dropped; a photo answer that cannot be read becomes a ``Media`` record with a ``problem`` for
that listing, never holding the listings back. ``keys`` lists every key the same way
(``Select=`` the key only) for reconciliation, and raises instead, since a partial list would look
like deletions.

The module runs past 400 lines because every transaction here (search, photos, metadata, keys)
goes through the one session and its re-login; what needs no session (reading replies, windows
and cursors) lives in ``compact`` and ``streams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from cadastre.connectors.mls.rets.compact import (
    BadRow,
    ObjectPart,
    ReplyUnreadable,
    SearchResult,
    is_reply,
    parse_metadata,
    parse_multipart,
    parse_search,
    reply_of,
)
from cadastre.connectors.mls.rets.streams import (
    LAST_MILLISECOND,
    SECOND,
    Position,
    instant,
    parse_local,
    repeated,
    split,
    window_query,
)
from cadastre.errors import (
    ConfigurationError,
    VendorAuthRefused,
    VendorError,
    VendorProtocolError,
    VendorRejected,
)
from cadastre.observe import SECRETS
from cadastre.ports import RawPage, RawRecord, StreamSchema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from cadastre.connectors.mls.rets.settings import RetsSettings
    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock

NOT_LOGGED_IN = 20701
NO_RECORDS_FOUND = 20201
NO_OBJECT_FOUND = 20403
NO_METADATA_FOUND = 20503
# Search codes that mean our query is wrong (no retry helps); others are the server's trouble.
_QUERY_REFUSED = {20200, 20202, 20206, 20207, 20211}
MEDIA_STREAM = "Media"
log = logging.getLogger(__name__)
_RAW_CAP = 64 * 1024  # how much of an unreadable answer the quarantine keeps


@dataclass(frozen=True)
class Photo:
    listing: str
    object_id: str
    content_type: str
    content: bytes
    description: str | None = None


@dataclass(frozen=True)
class _Answer:
    """A complete answer of a window, or one answer of a second paged with Offset: ``second``,
    its rows read so far through this one (``done``) and how many it holds (``count``)."""

    result: SearchResult
    second: datetime | None = None
    done: int = 0
    count: int | None = None


def _whole(result: SearchResult, done: int) -> bool:
    """Whether a second paged with Offset is read through, ``done`` rows in."""
    return done >= result.count if result.count is not None else not result.max_rows


class _Unreadable(Exception):
    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw[:_RAW_CAP].decode("utf-8", "replace")


class RetsConnector:
    def __init__(
        self,
        settings: RetsSettings,
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
        self._zone = ZoneInfo(settings.timezone)
        self._cookie: str | None = None  # the session; None: not logged in
        self._capabilities: dict[str, str] = {}
        self._login_lock = asyncio.Lock()
        self._datetime_fields: frozenset[str] | None = None
        self.logins = 0  # how many times this connector logged in (re-logins included)

    def __repr__(self) -> str:
        return f"RetsConnector(login_url={self._settings.login_url!r})"

    def streams(self) -> Sequence[str]:
        return [self._settings.resource]

    # ------------------------------------------------------------------------------ session

    async def _login(self) -> None:
        settings = self._settings
        response = await self._gateway.get(
            settings.login_url, headers={"RETS-Version": settings.rets_version}
        )
        try:
            reply = reply_of(response.content)
        except ReplyUnreadable as exc:
            raise VendorProtocolError(f"RETS login: {exc}") from None
        if reply.code != 0:
            raise VendorAuthRefused(f"RETS login answered ReplyCode {reply.code} {reply.text!r}")
        capabilities: dict[str, str] = {}
        body = response.content.decode("utf-8", "replace")
        inner = body.partition("<RETS-RESPONSE>")[2].partition("</RETS-RESPONSE>")[0]
        for line in inner.splitlines():
            name, equals, value = line.strip().partition("=")
            if equals and value:
                capabilities[name.strip()] = urljoin(settings.login_url, value.strip())
        if "Search" not in capabilities:
            raise VendorProtocolError("RETS login: the answer names no Search capability URL")
        jar: dict[str, str] = {}
        for header in response.headers.get_list("set-cookie"):
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(header)
            except CookieError:
                continue
            jar |= {name: morsel.value for name, morsel in cookie.items()}
        for value in jar.values():
            SECRETS.add(value)  # a session id lets anyone read the feed: keep it out of logs
        self._capabilities = capabilities
        self._cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        self.logins += 1

    def _headers(self, cookie: str | None) -> dict[str, str]:
        headers = {"RETS-Version": self._settings.rets_version}
        if cookie:
            headers["Cookie"] = cookie
        return headers

    async def _call(self, capability: str, params: Mapping[str, str]) -> Any:
        """One transaction, logged in; a 20701 answer logs in again and sends it once more."""
        for attempt in (1, 2):
            if self._cookie is None:
                async with self._login_lock:
                    if self._cookie is None:
                        await self._login()
            cookie = self._cookie
            url = self._capabilities.get(capability)
            if url is None:
                raise VendorProtocolError(f"RETS server offers no {capability} capability")
            response = await self._gateway.get(url, params=params, headers=self._headers(cookie))
            # By its body, not its content type: servers send replies as text/plain or untyped
            # too, and a 20701 missed here would keep a dead session for good.
            if not is_reply(response.content):
                return response
            try:
                code = reply_of(response.content).code
            except ReplyUnreadable:
                return response  # the caller says what it expected instead
            if code != NOT_LOGGED_IN:
                return response
            if attempt == 2:
                raise VendorAuthRefused(
                    f"RETS {capability} answered 20701 Not Logged In right after a fresh login"
                )
            if self._cookie == cookie:  # a concurrent caller may have logged in already
                self._cookie = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        try:
            if self._cookie is not None and "Logout" in self._capabilities:
                cookie, self._cookie = self._cookie, None
                url = self._capabilities["Logout"]
                # Logging out is a courtesy that frees a server seat; failing it loses nothing.
                with contextlib.suppress(VendorError):
                    await self._gateway.get(url, headers=self._headers(cookie))
        finally:
            await self._gateway.aclose()

    # ------------------------------------------------------------------------------- search

    async def _search(
        self, query: str, *, select: str | None = None, offset: int | None = None
    ) -> SearchResult:
        settings = self._settings
        params = {
            "SearchType": settings.resource, "Class": settings.search_class,
            "QueryType": "DMQL2", "Query": query, "Format": settings.format, "Count": "1",
            "Limit": str(settings.page_size), "StandardNames": "0",
        }  # fmt: skip
        if select:
            params["Select"] = select
        if offset is not None:
            params["Offset"] = str(offset)
        response = await self._call("Search", params)
        try:
            result = parse_search(response.content)
        except ReplyUnreadable as exc:
            raise _Unreadable(f"RETS search: {exc}", response.content) from None
        code, text = result.reply.code, result.reply.text
        if code == NO_RECORDS_FOUND:
            return SearchResult(result.reply, count=0)
        if code in _QUERY_REFUSED:
            hint = (
                " (a server that refuses fractions of a second in DMQL needs "
                "window_fractions: false)" if LAST_MILLISECOND in query else ""
            )  # fmt: skip
            raise VendorRejected(f"RETS search refused {query!r}: {code} {text!r}{hint}")
        if code != 0:
            raise VendorProtocolError(f"RETS search answered {code} {text!r}")
        return result

    def _now_local(self) -> datetime:
        now = self._clock.now().astimezone(self._zone)
        return now.replace(tzinfo=None, microsecond=0)

    def _query(self, low: datetime, high: datetime | None) -> str:
        return window_query(self._mapper.timestamp, low, high,
                            fractions=self._settings.window_fractions)  # fmt: skip

    async def _windows(
        self, low: datetime, select: str | None, resume: Position | None = None
    ) -> AsyncIterator[_Answer]:
        """Complete answers of disjoint windows covering [low, forever), earliest first. A
        ``resume`` position inside a second paged with Offset goes on from its offset there."""
        if resume is None or resume.offset is None:
            async for answer in self._walk(low, None, select):
                yield answer
            return
        if low < resume.time:  # an overlap, or the repeated hour: what comes before, again
            async for answer in self._walk(low, resume.time - SECOND, select):
                yield answer
        async for answer in self._resume_second(resume, select):
            yield answer
        async for answer in self._walk(resume.time + SECOND, None, select):
            yield answer

    async def _walk(
        self, low: datetime, high: datetime | None, select: str | None
    ) -> AsyncIterator[_Answer]:
        """The windows of [low, high] (high None: open), halving each capped one."""
        pending: list[tuple[datetime, datetime | None]] = [(low, high)]
        while pending:
            start, end = pending.pop()
            result = await self._search(self._query(start, end), select=select)
            if not result.truncated:
                yield _Answer(result)
                continue
            if end is None:
                # The open window: close it at now (or a day on, for clocks behind the server's)
                # and leave what comes after for later.
                end = max(self._now_local(), start + timedelta(days=1))
                pending.append((end + SECOND, None))
            if end <= start:
                done = len(result.rows)
                yield _Answer(result, start, done, result.count)
                async for answer in self._rest_of_second(start, result, done, select):
                    yield answer
                continue
            pending.extend(reversed(split(start, end)))

    async def _resume_second(self, at: Position, select: str | None) -> AsyncIterator[_Answer]:
        """The rest of a second a previous read paged part of: from its offset, or all of it
        again if its count changed meanwhile (a record that left it or joined it shifts the
        others' offsets: reading it whole again brings duplicates, never a gap)."""
        done = at.offset or 0
        query = self._query(at.time, at.time)
        first = await self._search(query, offset=done + 1, select=select)
        if first.count is not None and at.count is not None and first.count != at.count:
            first = await self._search(query, select=select)
            done = 0
        if not first.rows:
            return
        done += len(first.rows)
        yield _Answer(first, at.time, done, first.count)
        if not _whole(first, done):
            async for answer in self._rest_of_second(at.time, first, done, select):
                yield answer

    async def _rest_of_second(
        self, second: datetime, first: SearchResult, done: int, select: str | None
    ) -> AsyncIterator[_Answer]:
        """More records in one second than one answer holds: page it with Offset, an answer at a
        time, which only works where the server honours Offset (rows of the first answer or the
        one before coming back say it does not)."""
        query = self._query(second, second)
        anchor = {self._identity(r) for r in first.rows}
        previous: set[tuple[str, str | None]] = set()
        while True:
            more = await self._search(query, select=select, offset=done + 1)
            keys = {self._identity(r) for r in more.rows}
            if keys & (anchor | previous):
                raise VendorProtocolError(
                    f"more than {done} records share the second {second.isoformat()} and "
                    "the server ignores Offset: they cannot all be read (raise page_size to at "
                    "least the server's row cap)"
                )
            if not more.rows:
                return
            done += len(more.rows)
            yield _Answer(more, second, done, more.count)
            if _whole(more, done):
                return
            previous = keys

    def _identity(self, row: Mapping[str, str] | BadRow) -> tuple[str, str | None]:
        """What tells a row from the others of its second: its key, or an unreadable row's text
        (which has no key to read, and would otherwise let an ignored Offset loop forever)."""
        if isinstance(row, BadRow):
            return ("row", row.text)
        return ("key", row.get(self._mapper.key))

    # --------------------------------------------------------------------------------- read

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        if stream != self._settings.resource:
            raise ConfigurationError(f"RETS connection serves {self._settings.resource}, not "
                                     f"{stream!r}")  # fmt: skip
        start = Position.of(cursor)
        overlap = timedelta(seconds=self._settings.overlap_seconds)
        if start is not None:
            low = start.time - max(overlap, repeated(start.time, self._zone))
        else:
            low = self._settings.history_start
        position = start
        datetime_fields = await self._datetime_field_names()
        committed: dict[str, Any] = dict(cursor or {})
        yielded = False
        try:
            async for answer in self._windows(low, select=None, resume=start):
                result = answer.result
                records: list[RawRecord] = []
                stamps: list[tuple[datetime, str]] = []
                for row in result.rows:
                    record, local = self._record(stream, row, datetime_fields)
                    if start is not None and start.seen(local, record.external_id):
                        continue  # read and committed by the previous run
                    records.append(record)
                    if local is not None and record.external_id is not None:
                        stamps.append((local, record.external_id))
                if answer.second is not None:  # a second paged with Offset: how far in it
                    second, done, count = answer.second, answer.done, answer.count
                    position = (
                        position.paged(second, done, count) if position is not None
                        else Position(second, frozenset(), done, count)
                    )  # fmt: skip
                    committed = position.cursor()
                elif stamps:
                    position = (
                        position.advanced(stamps) if position is not None
                        else Position(stamps[0][0], frozenset()).advanced(stamps)
                    )  # fmt: skip
                    committed = position.cursor()
                if not records:
                    continue
                records.sort(key=_order)
                media: list[RawRecord] = []
                if self._settings.media:
                    since = low if start is not None else None
                    media = await self._media_of(self._photos_changed(records, since))
                yield RawPage(stream, [*records, *media], committed)
                yielded = True
        except _Unreadable as bad:
            yield RawPage(stream, [], committed, problem=bad.reason, raw=bad.raw)
            return
        if not yielded:
            yield RawPage(stream, [], committed)

    def _record(
        self, stream: str, row: Mapping[str, str] | BadRow, datetime_fields: frozenset[str]
    ) -> tuple[RawRecord, datetime | None]:
        if isinstance(row, BadRow):
            return RawRecord(stream, None, {"row": row.text}, None, problem=row.reason), None
        data: dict[str, Any] = {}
        for name, value in row.items():
            if value == "":
                data[name] = None  # COMPACT has no null: an empty value is one
            elif (
                name in datetime_fields and (exact := parse_local(value, fraction=True)) is not None
            ):
                data[name] = instant(exact, self._zone).isoformat()
            else:
                data[name] = value
        key = (row.get(self._mapper.key) or "").strip() or None
        stamp = row.get(self._mapper.timestamp) or None
        exact = parse_local(stamp, fraction=True)
        source_time = instant(exact, self._zone) if exact is not None else None
        local = exact.replace(microsecond=0) if exact is not None else None  # windows: seconds
        return RawRecord(stream, key, data, source_time, source_version=stamp), local

    async def _datetime_field_names(self) -> frozenset[str]:
        """Fields whose values are RETS DateTime (local time, turned into instants with the
        server's zone); from the metadata, or the timestamp field alone without it."""
        if self._datetime_fields is None:
            schema = await self.describe(self._settings.resource)
            found = {n for n, t in schema.fields.items() if t == "DateTime"} if schema else set()
            self._datetime_fields = frozenset(found | {self._mapper.timestamp})
        return self._datetime_fields

    # ------------------------------------------------------------------ keys, schema, photos

    async def keys(self, stream: str) -> AsyncIterator[Sequence[str]]:
        """Every live key of ``stream`` (``Select=`` the key field), one window at a time."""
        key = self._mapper.key
        try:
            async for answer in self._windows(self._settings.history_start, select=key):
                result = answer.result
                batch = [row[key] for row in result.rows if isinstance(row, dict) and row.get(key)]
                if len(batch) != len(result.rows):
                    raise VendorProtocolError("RETS key search: a row without a key")
                if batch:
                    yield batch
        except _Unreadable as bad:
            raise VendorProtocolError(bad.reason) from None

    async def describe(self, stream: str) -> StreamSchema | None:
        """The class's fields (SystemName -> DataType) and, for lookup fields, the values the
        server declares (long values for COMPACT-DECODED, codes for COMPACT)."""
        settings = self._settings
        table = await self._metadata("METADATA-TABLE", f"{stream}:{settings.search_class}")
        if table is None:
            return None
        fields = {r["SystemName"]: r.get("DataType", "") for r in table if r.get("SystemName")}
        lookup_of = {r["SystemName"]: r["LookupName"] for r in table if r.get("LookupName")}
        lookups: dict[str, frozenset[str]] = {}
        if lookup_of:
            values = await self._lookup_values(stream)
            lookups = {f: values.get(name, frozenset()) for f, name in lookup_of.items()}
        return StreamSchema(fields, lookups)

    async def _metadata(self, kind: str, ident: str) -> list[dict[str, str]] | None:
        params = {"Type": kind, "ID": ident, "Format": "COMPACT"}
        response = await self._call("GetMetadata", params)
        try:
            reply, blocks = parse_metadata(response.content)
        except ReplyUnreadable as exc:
            raise VendorProtocolError(f"RETS metadata: {exc}") from None
        if reply.code == NO_METADATA_FOUND:
            return None
        if reply.code != 0:
            raise VendorProtocolError(f"RETS metadata answered {reply.code} {reply.text!r}")
        return [row for block in blocks if block.kind == kind for row in block.rows]

    async def _lookup_values(self, stream: str) -> dict[str, frozenset[str]]:
        params = {"Type": "METADATA-LOOKUP_TYPE", "ID": f"{stream}:*", "Format": "COMPACT"}
        response = await self._call("GetMetadata", params)
        try:
            reply, blocks = parse_metadata(response.content)
        except ReplyUnreadable as exc:
            raise VendorProtocolError(f"RETS lookup metadata: {exc}") from None
        if reply.code != 0:
            return {}
        column = "LongValue" if self._settings.format == "COMPACT-DECODED" else "Value"
        found: dict[str, set[str]] = {}
        for block in blocks:
            name = block.attributes.get("Lookup", "")
            found.setdefault(name, set()).update(r[column] for r in block.rows if r.get(column))
        return {name: frozenset(values) for name, values in found.items()}

    async def photos(self, listing: str) -> list[Photo]:
        """Every photo of one listing (GetObject ``Type=Photo``, ``ID=<key>:*``); none: []."""
        try:
            parts = await self._objects([listing], by_location=False)
        except _Unreadable as bad:
            raise VendorProtocolError(bad.reason) from None
        return [
            Photo(p.headers.get("content-id", listing), p.headers.get("object-id", ""),
                  p.headers.get("content-type", ""), p.content,
                  p.headers.get("content-description"))
            for p in parts
        ]  # fmt: skip

    async def _objects(self, listings: Sequence[str], *, by_location: bool) -> list[ObjectPart]:
        """GetObject's parts for ``listings`` (all their photos): a multipart answer, one
        object, or none (20403)."""
        params = {"Resource": self._settings.resource, "Type": "Photo",
                  "ID": ",".join(f"{key}:*" for key in listings)}  # fmt: skip
        if by_location:
            params["Location"] = "1"
        response = await self._call("GetObject", params)
        kind = response.headers.get("content-type", "")
        if is_reply(response.content) or "xml" in kind:
            try:
                reply = reply_of(response.content)
            except ReplyUnreadable as exc:
                raise _Unreadable(f"RETS GetObject: {exc}", response.content) from None
            if reply.code == NO_OBJECT_FOUND:
                return []
            raise VendorProtocolError(f"RETS GetObject answered {reply.code} {reply.text!r}")
        if kind.lower().startswith("multipart/"):
            try:
                return parse_multipart(response.content, kind)
            except ReplyUnreadable as exc:
                raise _Unreadable(f"RETS GetObject: {exc}", response.content) from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        return [ObjectPart(headers, response.content)]

    async def _media_of(self, changed: Mapping[str, datetime]) -> list[RawRecord]:
        """Media records of the listings whose photos changed (listing -> that instant), from
        GetObject's part headers with ``Location=1``: the photos' URLs, not their bytes."""
        records: list[RawRecord] = []
        listings = sorted(changed)
        batch = self._settings.media_batch
        for i in range(0, len(listings), batch):
            records.extend(await self._media_batch(listings[i : i + batch], changed))
        return records

    async def _media_batch(
        self, listings: Sequence[str], changed: Mapping[str, datetime]
    ) -> list[RawRecord]:
        """One GetObject's Media records. An answer that cannot be read never holds the
        listings back: the batch is asked again a listing at a time, and a listing whose photos
        still cannot be read gets one Media record with a ``problem`` (quarantined with the
        answer) instead of its photos."""
        try:
            parts = await self._objects(listings, by_location=True)
        except (_Unreadable, VendorProtocolError) as exc:
            if len(listings) > 1:
                found: list[RawRecord] = []
                for listing in listings:
                    found.extend(await self._media_batch([listing], changed))
                return found
            listing, when = listings[0], changed.get(listings[0])
            reason = exc.reason if isinstance(exc, _Unreadable) else str(exc)
            log.warning("the photos of listing %s cannot be read: %s", listing, reason)
            data: dict[str, Any] = {
                "ResourceRecordKey": listing, "ResourceName": self._settings.resource,
                "MediaCategory": "Photo",
                "answer": exc.raw if isinstance(exc, _Unreadable) else None,
            }  # fmt: skip
            problem = f"the photos of {listing}: {reason}"
            return [RawRecord(MEDIA_STREAM, None, data, when, problem=problem)]
        return [self._media_record(part, changed) for part in parts]

    def _media_record(self, part: ObjectPart, changed: Mapping[str, datetime]) -> RawRecord:
        listing = part.headers.get("content-id", "")
        object_id = part.headers.get("object-id", "")
        when = changed.get(listing)
        key = f"{listing}-{object_id}" if listing and object_id else None
        data: dict[str, Any] = {
            "MediaKey": key, "ResourceRecordKey": listing or None,
            "ResourceName": self._settings.resource, "MediaCategory": "Photo",
            "Order": int(object_id) if object_id.isdigit() else None,
            "MediaObjectID": object_id or None,
            "MediaURL": part.headers.get("location"),
            "ShortDescription": (part.headers.get("content-description") or "")[:50] or None,
            "MediaModificationTimestamp": when.isoformat() if when else None,
        }  # fmt: skip
        stamp = data["MediaModificationTimestamp"]
        return RawRecord(MEDIA_STREAM, key, data, when, source_version=stamp)

    def _photos_changed(
        self, records: Sequence[RawRecord], since: datetime | None
    ) -> dict[str, datetime]:
        """Listing -> its photo timestamp, for listings whose photos changed at or after
        ``since`` (a full read: every listing that has photos)."""
        field = self._settings.photo_timestamp
        changed: dict[str, datetime] = {}
        for record in records:
            local = parse_local(record.data.get(field)) if record.problem is None else None
            if record.external_id is None or local is None:
                continue
            if since is None or local >= since:
                changed[record.external_id] = instant(local, self._zone)
        return changed


def _order(record: RawRecord) -> tuple[bool, float, str]:
    stamp = record.source_time.timestamp() if record.source_time is not None else 0.0
    return (record.source_time is None, stamp, record.external_id or "")
