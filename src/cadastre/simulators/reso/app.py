"""The RESO Web API MLS simulator: OAuth2 client credentials, the OData ``Property`` resource with
key-set paging, a CSDL ``$metadata`` document, and admin calls that change records the way agents
do (touch, create) so replication can be tested against a moving MLS.

The MLS speaks a regional ``dialect`` (``dialect.py``; data files in ``dialects/``): its local
prefix, field names, enumeration spellings, page sizes, rate-limit windows, token lifetime,
deletion style and Media support. ``default`` is the simulator's own MLS.

Endpoints: ``POST /oauth/token``; ``GET /odata/`` (service document), ``GET /odata/$metadata``
(served without a token, so a client can read the schema before it authenticates),
``GET /odata/Property`` (``$expand=Media`` where the dialect offers it), ``GET /odata/Media``
(where it has the resource) and ``GET /odata/Property('KEY')`` (bearer token required), and
``POST /odata/Property`` (RESO Add, with ``Idempotency-Key``: see ``writes``). The vendor rate
limit and the faults cover ``/odata``, writes included; the token endpoint is outside the rate
limit (an MLS meters data, not logins). Admin calls that move the MLS: ``admin.py``; every
change they make is pushed to a webhook subscriber once one is set (``webhooks.py``).

Longer than most modules: the records, their Media and the live schema are one MLS's state, and
the methods that move it and the routes that serve it share that state. What could stand alone
does: dialect data (``dialect.py``), drift (``drift.py``), Media records and their paging
(``media.py``), the admin HTTP layer (``admin.py``), queries (``query.py``, ``index.py``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadastre.simulators.answers import delay
from cadastre.simulators.base import Simulator
from cadastre.simulators.faults import odata_error
from cadastre.simulators.ratelimit import RateLimit
from cadastre.simulators.reso.admin import admin_routes
from cadastre.simulators.reso.auth import TokenIssuer
from cadastre.simulators.reso.dialect import BASE_PREFIX, Dialect, load_dialect
from cadastre.simulators.reso.drift import LiveSchema
from cadastre.simulators.reso.index import RecordIndex, RecordsView
from cadastre.simulators.reso.media import MEDIA_FIELDS, media_for, media_order, query_media
from cadastre.simulators.reso.odata_filter import QueryError, parse_datetime
from cadastre.simulators.reso.query import CARRIED, encode_token, parse_query, run
from cadastre.simulators.reso.records import (
    DEFECTS,
    Row,
    format_timestamp,
    generate,
    initial_records,
    listing_key,
    sanitize_change,
    truncate_to_millis,
)
from cadastre.simulators.reso.schema import KEY_FIELD, STRING, TIMESTAMP_FIELD, metadata_xml
from cadastre.simulators.reso.webhooks import WebhookEmitter, change_event, deletion_event
from cadastre.simulators.reso.writes import IdempotencyKeys, ResoStats, record_from_body

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.requests import Request

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile
    from cadastre.simulators.ratelimit import RateLimitHeaders
    from cadastre.simulators.reso.schema import FieldSpec

DEFAULT_RATE_LIMIT = RateLimit(requests=30, per=1.0)
ODATA_JSON = "application/json;odata.metadata=minimal"
ODATA_HEADERS = {"OData-Version": "4.0"}
LINK_SAFE = "'(),:"  # left readable in a nextLink; everything else is percent-encoded


class ResoSimulator(Simulator):
    rate_limited_paths = ("/odata",)
    stats: ResoStats

    def __init__(
        self,
        records: int = 500,
        seed: int = 7,
        clock: Clock | None = None,
        rate_limit: RateLimit | Literal["dialect"] | None = "dialect",
        page_size_max: int | None = None,
        token_ttl: float | None = None,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",  # noqa: S107 - the simulator's published demo login
        local_prefix: str | None = None,
        bad_record_rate: float = 0.0,
        faults: FaultProfile | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        write_latency: float = 0.0,
        dialect: str | Dialect = "default",
    ) -> None:
        """``rate_limit``, ``page_size_max``, ``token_ttl`` and ``local_prefix`` default to the
        dialect's; ``rate_limit=None`` turns the limit off."""
        chosen = load_dialect(dialect) if isinstance(dialect, str) else dialect
        if local_prefix is not None:
            # A new model, not model_copy: that would carry the cached field plan of the old prefix
            chosen = Dialect.model_validate({**chosen.model_dump(), "local_prefix": local_prefix})
        page_size_max = chosen.page.max if page_size_max is None else page_size_max
        token_ttl = chosen.token_ttl if token_ttl is None else token_ttl
        if records < 0 or page_size_max < 1 or token_ttl <= 0 or write_latency < 0:
            raise ValueError(
                "records >= 0, page_size_max >= 1, token_ttl > 0 and write_latency >= 0"
            )
        if not 0.0 <= bad_record_rate <= 1.0:
            raise ValueError("bad_record_rate is between 0 and 1")
        self.dialect = chosen
        self.seed = seed
        self.page_size_max = page_size_max
        self.local_prefix = chosen.local_prefix
        self.bad_record_rate = bad_record_rate
        # Seconds a write takes once its body is in, on the simulator clock; a retry with the same
        # Idempotency-Key arriving meanwhile gets 409.
        self.write_latency = write_latency
        self.schema = LiveSchema(chosen.fields())
        rows = initial_records(records, seed, BASE_PREFIX, bad_record_rate)
        for row in rows:
            row.data = chosen.wire(row.data)
        self._index = RecordIndex(rows)
        self._next_number = records + 1
        self._touch_rng = random.Random(seed + 3)  # noqa: S311 - reproducible, not secret
        self._create_rng = random.Random(seed + 4)  # noqa: S311
        self._delete_rng = random.Random(seed + 5)  # noqa: S311
        self._photo_versions: dict[str, int] = {}  # ListingKey -> times its photos changed
        self._media: list[dict[str, Any]] | None = None  # the Media resource, built when read
        self.deleted: list[str] = []  # keys deleted upstream, in order
        self._metadata: tuple[int, bytes] | None = None
        super().__init__(
            clock=clock,
            rate_limit=chosen.rate_limit if rate_limit == "dialect" else rate_limit,
            faults=faults,
            rate_limit_headers=rate_limit_headers,
        )
        self.stats = ResoStats()
        self._idempotency = IdempotencyKeys(self.stats)
        # Pushes every data change to a subscriber once one is set (``webhooks.py``).
        self.webhooks = WebhookEmitter(self.clock)
        self._tokens = TokenIssuer(self.clock, client_id, client_secret, token_ttl)

    def __repr__(self) -> str:
        return (
            f"ResoSimulator(records={len(self._index)}, seed={self.seed}, "
            f"dialect={self.dialect.name!r})"
        )

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """The Property fields as served now (the dialect's, after any drift)."""
        return self.schema.fields

    # ---------------------------------------------------------------------- views for tests

    @property
    def records(self) -> RecordsView:
        """ListingKey -> the record as served (bad data included), read-only."""
        return RecordsView(self._index)

    @property
    def defects(self) -> dict[str, str]:
        """ListingKey -> the kind of bad data that record is served with."""
        return {key: row.defect for key, row in self._index.rows.items() if row.defect}

    def modified_at(self, key: str) -> datetime:
        """The record's true ModificationTimestamp (also for records served with a bad one)."""
        return self._index.rows[key].modified

    # ----------------------------------------------------------------------- moving the MLS

    def touch(
        self,
        keys: Iterable[str] | None = None,
        count: int | None = None,
        changes: Mapping[str, Any] | None = None,
        at: datetime | str | None = None,
    ) -> list[str]:
        """Modify records now (or ``at``; a past instant is a change committed late upstream).
        ``keys`` names them, or ``count`` picks that many with the seeded generator."""
        if (keys is None) == (count is None):
            raise ValueError("touch takes keys or count")
        when = self._instant(at)
        updates = self._checked_changes(changes or {})
        chosen = self._choose(keys, count, self._touch_rng)
        for key in chosen:
            self._apply(key, updates, when)
        self._media = None
        self._notify(chosen, "Updated")
        return chosen

    def create(self, n: int, at: datetime | str | None = None) -> list[str]:
        if n < 0:
            raise ValueError("create takes a count >= 0")
        when = self._instant(at)
        created = []
        for _ in range(n):
            while listing_key(self._next_number) in self._index.rows:  # a key a client wrote
                self._next_number += 1
            row = generate(self._next_number, when, self._create_rng, BASE_PREFIX)
            row.data = self.schema.conform(self.dialect.wire(row.data))
            if self._create_rng.random() < self.bad_record_rate:
                row.defect = self._create_rng.choice(sorted(DEFECTS))
            self._next_number += 1
            self._index.add(row)
            created.append(row.key)
        self._media = None
        self._notify(created, "Created")
        return created

    def bump(self, at: datetime | str | None = None) -> int:
        """The mass update: every record's ModificationTimestamp becomes now (or ``at``), as when
        an MLS touches its whole database in one go. Answers how many records moved."""
        when = self._instant(at)
        stamp = format_timestamp(when)
        rows = list(self._index.rows.values())
        for row in rows:
            row.data[TIMESTAMP_FIELD] = stamp
        self._index.restamp(rows, when)
        self._notify([row.key for row in rows], "Updated")
        return len(rows)

    def delete(self, keys: Iterable[str] | None = None, count: int | None = None) -> list[str]:
        """Listings withdrawn from the feed: with ``deletion.style`` vanish they are gone (only
        a key reconciliation notices); with flag they stay, the flag false and the timestamp
        now (MLS Grid's ``MlgCanView``)."""
        flag = self.dialect.deletion.field
        # A count picks among the listings still in the feed: one already flagged is not news.
        shown = None if flag is None else [
            key for key, row in self._index.rows.items() if row.data.get(flag) is not False
        ]  # fmt: skip
        chosen = self._choose(keys, count, self._delete_rng, among=shown)
        when = self._instant(None)
        for key in chosen:
            if flag is None:
                self._index.remove(key)
            else:
                self._apply(key, {flag: False}, when)
        self.deleted += chosen
        self._media = None
        if flag is None:
            if self.webhooks.active:
                self.webhooks.emit([deletion_event(key, when) for key in chosen])
        else:  # MLS Grid: a withdrawal is an update whose record carries the flag
            self._notify(chosen, "Updated")
        return chosen

    def change_media(self, key: str, photos: int | None = None) -> dict[str, Any]:
        """An agent replaces a listing's photos (``photos`` of them; the same number if None):
        new URLs, PhotosChangeTimestamp and ModificationTimestamp now."""
        if key not in self._index.rows:
            raise ValueError(f"unknown ListingKey: {key!r}")
        if photos is not None and (isinstance(photos, bool) or not 0 <= photos <= 500):
            raise ValueError("photos is between 0 and 500")
        row = self._index.rows[key]
        count = _photo_count(row.data) if photos is None else photos
        when = self._instant(None)
        self._photo_versions[key] = self._photo_versions.get(key, 0) + 1
        changes = {"PhotosCount": count, "PhotosChangeTimestamp": format_timestamp(when)}
        self._apply(key, {k: v for k, v in changes.items() if k in self.fields}, when)
        self._media = None
        self._notify([key], "Updated")
        return {
            "key": key,
            "photos": count,
            "PhotosChangeTimestamp": changes["PhotosChangeTimestamp"],
        }

    def media(self, key: str) -> list[dict[str, Any]]:
        """The Media records of one listing, as served."""
        data = self._index.rows[key].data
        return media_for(
            key,
            _photo_count(data),
            self._photo_versions.get(key, 0),
            data.get("PhotosChangeTimestamp"),
        )

    def add_enum_value(self, field: str, value: str, count: int) -> list[str]:
        """A new enumeration value starts to appear: ``count`` records (picked with the seeded
        generator) are changed to it now."""
        if field not in self.fields or self.fields[field].edm != STRING:
            raise ValueError(f"{field!r} is not a text field of this MLS")
        return self.touch(count=count, changes={field: value})

    def add_field(self, name: str, edm: str, value: Any = None) -> None:
        self.schema.add_field(self._all_data(), name, edm, value)

    def remove_field(self, name: str) -> None:
        self.schema.remove_field(self._all_data(), name)

    def retype_field(self, name: str, edm: str) -> None:
        self.schema.retype_field(self._all_data(), name, edm)

    def _all_data(self) -> list[dict[str, Any]]:
        return [row.data for row in self._index.rows.values()]

    def _choose(
        self,
        keys: Iterable[str] | None,
        count: int | None,
        rng: random.Random,
        among: list[str] | None = None,
    ) -> list[str]:
        if (keys is None) == (count is None):
            raise ValueError("give keys or count")
        if keys is not None:
            if isinstance(keys, str):
                raise ValueError("keys is a list of ListingKeys")
            chosen = list(dict.fromkeys(keys))
            unknown = [key for key in chosen if key not in self._index.rows]
            if unknown:
                raise ValueError(f"unknown ListingKey: {unknown[:5]}")
            return chosen
        population = list(self._index.rows) if among is None else among
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 0 <= count <= len(population)
        ):
            raise ValueError(f"count is between 0 and {len(population)}")
        return rng.sample(population, count)

    def _instant(self, at: datetime | str | None) -> datetime:
        if at is None:
            return truncate_to_millis(self.clock.now())
        if isinstance(at, str):
            try:
                return truncate_to_millis(parse_datetime(at))
            except QueryError as exc:
                raise ValueError(str(exc)) from None
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValueError("at is a timezone-aware timestamp")
        return truncate_to_millis(at)

    def _checked_changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, Mapping):
            raise ValueError("changes is an object of field names and values")
        checked = {}
        for name, value in changes.items():
            if name not in self.fields:
                raise ValueError(f"unknown field {name!r}")
            if name in (KEY_FIELD, TIMESTAMP_FIELD):
                raise ValueError(f"{name} is not changed this way (use at for the timestamp)")
            checked[name] = sanitize_change(self.fields[name], value)
        return checked

    def _notify(self, keys: Iterable[str], kind: str) -> None:
        # Events are made now, whatever happens to the records before they are sent.
        if self.webhooks.active:
            rows = self._index.rows
            self.webhooks.emit([change_event(rows[key], kind) for key in keys])

    def _apply(self, key: str, changes: Mapping[str, Any], when: datetime) -> None:
        row = self._index.rows[key]
        data, stamp = row.data, format_timestamp(when)
        if "ListPrice" in changes and changes["ListPrice"] != data.get("ListPrice"):
            data["PreviousListPrice"], data["PriceChangeTimestamp"] = data.get("ListPrice"), stamp
        if "StandardStatus" in changes and changes["StandardStatus"] != data.get("StandardStatus"):
            data["StatusChangeTimestamp"] = stamp
        data.update(changes)
        if row.defect is not None and DEFECTS[row.defect][0] in changes:
            row.defect = None  # the agent fixed the field that was broken
        data[TIMESTAMP_FIELD] = stamp
        self._index.move(row, when)

    # --------------------------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/odata", self._service_document, methods=["GET"]),
            Route("/odata/", self._service_document, methods=["GET"]),
            Route("/odata/$metadata", self._metadata_document, methods=["GET"]),
            Route("/odata/Property", self._collection, methods=["GET"]),
            Route("/odata/Property", self._add, methods=["POST"]),
            Route("/odata/Property({key})", self._entity, methods=["GET"]),
            Route("/odata/Media", self._media_collection, methods=["GET"]),
        ]

    def admin_routes(self) -> list[BaseRoute]:
        return admin_routes(self)

    async def _token(self, request: Request) -> Response:
        response, issued = await self._tokens.token_endpoint(request)
        if issued:
            self.stats.tokens_issued += 1
        return response

    async def _service_document(self, request: Request) -> Response:
        base = _base_url(request)
        sets = ["Property", *(["Media"] if self.dialect.media.resource else [])]
        body = {
            "@odata.context": f"{base}/odata/$metadata",
            "value": [{"name": name, "kind": "EntitySet", "url": name} for name in sets],
        }
        return _odata_json(body)

    async def _metadata_document(self, request: Request) -> Response:
        # Built again after a drift: $metadata says what the MLS serves now.
        if self._metadata is None or self._metadata[0] != self.schema.version:
            media = self.dialect.media
            document = metadata_xml(
                self.fields, MEDIA_FIELDS, media_set=media.resource, media_expand=media.expand
            )
            self._metadata = (self.schema.version, document.encode())
        return Response(self._metadata[1], media_type="application/xml", headers=ODATA_HEADERS)

    async def _collection(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        pairs = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        page_rules = self.dialect.page
        try:
            query = parse_query(
                pairs,
                self.fields,
                self.page_size_max,
                default_top=page_rules.default,
                over_max=page_rules.over_max,
                expandable=("Media",) if self.dialect.media.expand else (),
                expand_max=min(self.dialect.max_expand, self.page_size_max),
            )
        except QueryError as exc:
            return _odata_json(odata_error("BadRequest", str(exc)), 400)
        page = run(self._index, query, self.fields)
        base = _base_url(request)
        selected = f"({','.join(query.select)})" if query.select else ""
        body: dict[str, Any] = {"@odata.context": f"{base}/odata/$metadata#Property{selected}"}
        if page.count is not None:
            body["@odata.count"] = page.count
        if query.expand:
            body["value"] = [
                {**row.served(query.select), "Media": self.media(row.key)} for row in page.rows
            ]
        else:
            body["value"] = [row.served(query.select) for row in page.rows]
        if page.more:
            options = {name: query.options[name] for name in CARRIED if name in query.options}
            options["$skiptoken"] = encode_token(page.rows[-1], query.order, self.fields)
            link = "&".join(
                f"{name}={quote(value, safe=LINK_SAFE)}" for name, value in options.items()
            )
            body["@odata.nextLink"] = f"{base}/odata/Property?{link}"
        return _odata_json(body)

    async def _entity(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        literal = request.path_params["key"]
        literal = literal.removeprefix(f"{KEY_FIELD}=")
        if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
            return _odata_json(odata_error("BadRequest", "the key is a quoted string"), 400)
        row = self._index.rows.get(literal[1:-1].replace("''", "'"))
        if row is None:
            return _odata_json(odata_error("NotFound", "no Property with that key"), 404)
        context = f"{_base_url(request)}/odata/$metadata#Property/$entity"
        return _odata_json({"@odata.context": context, **row.served()})

    async def _media_collection(self, request: Request) -> Response:
        if not self.dialect.media.resource:
            return _odata_json(odata_error("NotFound", "this MLS has no Media resource"), 404)
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        pairs = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        options = {name: value for name, value in pairs if name.startswith("$")}
        if self._media is None:
            self._media = sorted(
                (item for key in self._index.rows for item in self.media(key)), key=media_order
            )
        try:
            page = query_media(self._media, options, self.dialect.page.default, self.page_size_max)
        except QueryError as exc:
            return _odata_json(odata_error("BadRequest", str(exc)), 400)
        base = _base_url(request)
        body: dict[str, Any] = {
            "@odata.context": f"{base}/odata/$metadata#Media",
            "value": page.value,
        }
        if page.next_token is not None:
            kept = {k: v for k, v in options.items() if k in ("$filter", "$select", "$top")}
            kept["$skiptoken"] = page.next_token
            link = "&".join(f"{k}={quote(v, safe=LINK_SAFE)}" for k, v in kept.items())
            body["@odata.nextLink"] = f"{base}/odata/Media?{link}"
        return _odata_json(body)

    async def _add(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused

        async def apply(raw: bytes) -> Response | None:
            try:
                data = record_from_body(raw, self.fields)
            except ValueError as exc:
                return _odata_json(odata_error("BadRequest", str(exc)), 400)
            if (
                self.write_latency > 0
                and await delay(self.clock, self.write_latency, request.receive) is None
            ):
                return None  # the client went away mid-write: the vendor rolls back
            new = data[KEY_FIELD] not in self._index.rows
            row = self._store(data, self._instant(None))
            self._notify([row.key], "Created" if new else "Updated")
            self.stats.creates += 1
            self.stats.applied_by_listing[row.key] += 1
            base = _base_url(request)
            literal = quote(row.key.replace("'", "''"), safe=LINK_SAFE)
            entity = f"{base}/odata/Property('{literal}')"
            body = {"@odata.context": f"{base}/odata/$metadata#Property/$entity", **row.served()}
            return _odata_json(body, 201, {"Location": entity})

        return await self._idempotency.handle(request, apply)

    def _store(self, data: dict[str, Any], when: datetime) -> Row:
        """Create the record, or replace the whole of an existing one."""
        key: str = data[KEY_FIELD]
        data[TIMESTAMP_FIELD] = format_timestamp(when)
        row = self._index.rows.get(key)
        if row is None:
            row = Row(key=key, modified=when, data=data)
            self._index.add(row)
        else:
            row.data, row.defect = data, None
            self._index.move(row, when)
        return row

    def _unauthorized(self, request: Request) -> Response | None:
        error = self._tokens.check(request.headers.get("authorization"))
        if error is None:
            return None
        challenge = f'Bearer error="{error}"' if error else 'Bearer realm="odata"'
        message = "the access token is expired or unknown" if error else "a bearer token is needed"
        return _odata_json(
            odata_error("Unauthorized", message), 401, {"WWW-Authenticate": challenge}
        )


def _photo_count(data: Mapping[str, Any]) -> int:
    # A drifted PhotosCount (retyped to text, removed) counts as no photos rather than a 500.
    value = data.get("PhotosCount")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _odata_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status, {**ODATA_HEADERS, **(headers or {})}, media_type=ODATA_JSON
    )
