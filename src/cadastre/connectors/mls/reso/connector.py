"""``ResoConnector``: RESO Web API (OData v4) pages in, raw records out.

Each read learns the resource's fields from ``$metadata`` (so ``$select`` asks only for fields the
server has and the mapping uses), then pages with ``$orderby=ModificationTimestamp,ListingKey``
through ``@odata.nextLink`` (or, with ``paging: keyset``, by building each next query from the last
key). A page that is not an OData collection is a ``VendorProtocolError`` (transient: the runner
reads again from the last committed page); an item that is not a record is passed on with a
``problem`` so that it is quarantined, never dropped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cadastre.connectors.mls.reso.streams import Position, first_filter, parse_time
from cadastre.errors import VendorError, VendorProtocolError
from cadastre.ports import RawPage, RawRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from cadastre.connectors.mls.reso.settings import ResoSettings
    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock

_MAX_METADATA = 8 * 1024 * 1024  # CSDL documents run to a few MB for the whole Data Dictionary


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

    def streams(self) -> Sequence[str]:
        return [self._settings.resource]

    async def aclose(self) -> None:
        await self._gateway.aclose()

    async def offered_fields(self) -> frozenset[str] | None:
        """The resource's property names from ``$metadata``; None when the server does not say
        (then ``$select`` is left out and every field comes back)."""
        if self._offered is None:
            try:
                response = await self._gateway.get(f"{self._settings.base_url}/$metadata")
            except VendorError:
                return None
            self._offered = _properties(response.content, self._settings.resource)
        return self._offered or None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        settings, mapper = self._settings, self._mapper
        start = Position.of(cursor)
        position = start
        params: dict[str, str] = {
            "$top": str(settings.page_size),
            "$orderby": f"{mapper.timestamp},{mapper.key}",
            "$count": "true",
        }
        if settings.select:
            offered = await self.offered_fields()
            if offered is not None:
                params["$select"] = ",".join(mapper.vendor_fields(offered))
        overlap = timedelta(seconds=settings.overlap_seconds)
        where = first_filter(start, overlap, mapper.timestamp, mapper.key)
        if where is not None:
            params["$filter"] = where
        url: str | None = f"{settings.base_url}/{stream}"
        query: dict[str, str] | None = params
        expected: int | None = None
        while url is not None:
            body = await self._gateway.get_json(url, params=query)
            items, next_link, count = self._collection(body, url)
            expected = count if expected is None else expected
            records = [self._record(stream, item) for item in items]
            last: Position | None = None  # where this page ends, for a keyset next query
            for record in records:
                if record.external_id is not None and record.source_time is not None:
                    last = Position(record.source_time, record.external_id)
                    # The committed cursor never moves back, e.g. over an overlap page.
                    position = last if position is None or last > position else position
            cursor_value = position.cursor() if position is not None else dict(cursor or {})
            yield RawPage(stream, records, cursor_value, expected)
            if not items:
                return
            if settings.paging == "keyset":
                if next_link is None or last is None:
                    return
                query = {**params, "$filter": last.after(mapper.timestamp, mapper.key)}
                query.pop("$count", None)
                url = f"{settings.base_url}/{stream}"
            else:
                url, query = next_link, None

    def _collection(self, body: Any, url: str) -> tuple[list[Any], str | None, int | None]:
        where = urlsplit(url).path
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise VendorProtocolError(f"{where}: the answer is not an OData collection")
        next_link = body.get("@odata.nextLink")
        if next_link is not None and (
            not isinstance(next_link, str) or _origin(next_link) != self._origin
        ):
            # Following a link to another host would hand it our token.
            raise VendorProtocolError(f"{where}: @odata.nextLink leaves the service")
        count = body.get("@odata.count")
        return body["value"], next_link, count if isinstance(count, int) else None

    def _record(self, stream: str, item: Any) -> RawRecord:
        if not isinstance(item, dict):
            return RawRecord(stream, None, {"value": item}, None,
                             problem=f"not a record: a JSON {type(item).__name__}")  # fmt: skip
        key = item.get(self._mapper.key)
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        stamp = item.get(self._mapper.timestamp)
        return RawRecord(
            stream=stream,
            external_id=key if isinstance(key, str) and key.strip() else None,
            data=item,
            source_time=parse_time(stamp),
            source_version=stamp if isinstance(stamp, str) else None,
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _properties(document: bytes, resource: str) -> frozenset[str]:
    if len(document) > _MAX_METADATA:
        return frozenset()
    try:
        root = ET.fromstring(document)  # noqa: S314 - expat refuses entity expansion bombs
    except ET.ParseError:
        return frozenset()
    names: set[str] = set()
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "EntityType" and element.get("Name") == resource:
            names.update(
                child.get("Name", "")
                for child in element
                if child.tag.rsplit("}", 1)[-1] == "Property"
            )
    names.discard("")
    return frozenset(names)
