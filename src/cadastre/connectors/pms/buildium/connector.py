"""``BuildiumConnector``: Buildium's tenants, units and leases read incrementally, and (through
``writes.py``) written back.

A read asks ``lastupdatedfrom`` (the last read's end less ``overlap_seconds``) and
``lastupdatedto`` (this read's start), ordered by ``Id`` (unique, so pages neither skip nor repeat
by sort ties), ``limit``/``offset`` paged. Fixing the upper bound makes the set the read pages
through one that can only shrink while it pages (an object updated meanwhile moves past the
bound: the next read takes it), and a shrink is what offset paging must fear: the objects after
one that left slide one place towards the start, and one of them would slide under a page already
read. Each page's ``X-Total-Count`` tells how many left since the previous page; the read then
steps back that many places and reads on (what it reads twice comes back as duplicates). Objects
that *join* the set (a clock behind ours) only push others later: read twice, never skipped.

Each page's cursor holds the window and the next offset and total, so a failed run resumes where
it stopped; the last page's cursor is ``{"LastUpdatedFrom": <this read's start>}``. A page that is
not a JSON list is read again ``page_attempts`` times, then handed on unreadable (quarantined with
its body; the stream's read ends there, the others go on). An item that is not an object, or one
without ``Id``, is passed on and quarantined by mapping.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.connectors.pms.buildium.streams import (
    PATHS,
    STREAMS,
    filter_time,
    record,
)
from cadastre.connectors.pms.buildium.webhooks import read_event
from cadastre.connectors.pms.buildium.writes import BuildiumWriter
from cadastre.errors import VendorRejected
from cadastre.mapping.records import parse_time
from cadastre.ports import (
    Idempotency,
    OutboundWrite,
    RawPage,
    RawRecord,
    WriteOperation,
    WriteReceipt,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from cadastre.connectors.pms.buildium.settings import BuildiumSettings
    from cadastre.gateway import Gateway
    from cadastre.ports import Clock

log = logging.getLogger(__name__)

RAW_LIMIT = 256 * 1024
FROM, WINDOW, OFFSET, TOTAL = "LastUpdatedFrom", "Window", "Offset", "Total"


class BuildiumConnector:
    def __init__(
        self, settings: BuildiumSettings, *, gateway: Gateway, clock: Clock, system: str = "pms"
    ) -> None:
        self.system = system
        self._settings = settings
        self._gateway = gateway
        self._clock = clock
        self._writer = BuildiumWriter(settings.base_url, gateway, clock)

    def streams(self) -> Sequence[str]:
        return list(STREAMS)

    async def aclose(self) -> None:
        await self._gateway.aclose()

    # ------------------------------------------------------------------------------ read

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        settings = self._settings
        cursor = dict(cursor or {})
        window, saved, count = cursor.get(WINDOW), cursor.get(OFFSET), cursor.get(TOTAL)
        offset, total = 0, None
        since_param: str | None
        if isinstance(window, list) and isinstance(saved, int) and _resumable(window, saved):
            # the resumption of a read that stopped part way: the same window, from its offset
            since_param, upto_param = window[0], str(window[1])
            offset, total = saved, count if isinstance(count, int) else None
        else:
            upto_param = filter_time(self._clock.now())
            since = parse_time(cursor.get(FROM))
            if since is not None:
                since -= timedelta(seconds=settings.overlap_seconds)
            since_param = filter_time(since) if since is not None else None
        params: dict[str, str] = {
            "limit": str(settings.page_size), "orderby": "Id asc", "lastupdatedto": upto_param,
        }  # fmt: skip
        if since_param is not None:
            params["lastupdatedfrom"] = since_param
        url = f"{settings.base_url}{PATHS[stream]}"
        held = {FROM: cursor[FROM]} if isinstance(cursor.get(FROM), str) else {}
        while True:
            observed = self._clock.now()
            fetched = await self._fetch(url, {**params, "offset": str(offset)})
            if isinstance(fetched, _Unreadable):
                yield RawPage(stream, [], cursor, problem=fetched.problem, raw=fetched.raw)
                return
            items, count = fetched
            records = [record(stream, item, observed) for item in items]
            shrunk = total - count if isinstance(total, int) and count is not None and (
                count < total) else 0  # fmt: skip
            if shrunk:
                # Objects left the set since the last page: those after them slid towards the
                # start, some under the page before. Step back over as many and read again.
                log.debug("%s: %d left the set while paging; stepping back", stream, shrunk)
                offset = max(0, offset - shrunk)
            else:
                offset += len(items)
            total = count if count is not None else total
            if not shrunk and (
                len(items) < settings.page_size or (total is not None and offset >= total)
            ):
                yield RawPage(stream, records, {FROM: upto_param}, total)
                return
            cursor = {**held, WINDOW: [since_param, upto_param], OFFSET: offset, TOTAL: total}
            yield RawPage(stream, records, cursor, total)

    async def _fetch(self, url: str, query: Mapping[str, str]) -> tuple[list[Any], int | None] | (
            _Unreadable):  # fmt: skip
        attempts = self._settings.page_attempts
        for attempt in range(1, attempts + 1):
            response = await self._gateway.get(url, params=query,
                                               headers={"Accept": "application/json"})  # fmt: skip
            content = response.content
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                kind = response.headers.get("content-type", "no content type")
                problem = f"the answer is not JSON ({len(content)} bytes, {kind})"
            else:
                self._gateway.note_shape(response, body)  # what the page looks like, not holds
                if isinstance(body, list):
                    return body, _count(response.headers.get("X-Total-Count"))
                problem = f"the answer is a JSON {type(body).__name__}, not a list"
            log.warning("%s: unreadable page (read %d of %d): %s", url.rsplit("/v1", 1)[-1],
                        attempt, attempts, problem)  # fmt: skip
            if attempt < attempts:
                await self._clock.sleep(float(attempt))
        return _Unreadable(problem, content[:RAW_LIMIT].decode("utf-8", errors="replace"))

    async def fetch(self, stream: str, key: str) -> RawRecord | None:
        """One object by id, as a raw record; None when Buildium answers 404."""
        observed = self._clock.now()
        try:
            found = await self._gateway.get_json(f"{self._settings.base_url}{PATHS[stream]}/{key}")
        except VendorRejected as exc:
            if exc.status == 404:
                return None
            raise
        return record(stream, found, observed)

    # --------------------------------------------------------------------------- webhooks

    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> Sequence[RawRecord]:
        """A verified Buildium event as raw records: ``webhooks.py``."""
        return await read_event(body, self.fetch)

    # ----------------------------------------------------------------------------- writes

    def writable(self) -> Mapping[str, frozenset[str]]:
        return self._writer.writable()

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        return Idempotency.NONE  # no idempotency key, no upsert: read back, never resend

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        return await self._writer.write(write)

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        return await self._writer.read_back(write)


class _Unreadable:
    def __init__(self, problem: str, raw: str) -> None:
        self.problem = problem
        self.raw = raw


def _count(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _resumable(window: Any, offset: Any) -> bool:
    return (
        isinstance(window, list) and len(window) == 2
        and (window[0] is None or parse_time(window[0]) is not None)
        and parse_time(window[1]) is not None
        and isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0
    )  # fmt: skip
