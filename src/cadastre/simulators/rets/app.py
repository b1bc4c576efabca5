"""A RETS 1.7.2 MLS: Login (HTTP Digest + ``RETS-Session-ID``), Search (DMQL2, COMPACT and
COMPACT-DECODED, Count, Limit, Offset, Select), GetObject (photos, multipart; with ``Location=1``
their URLs, served under ``/photos/``), GetMetadata (METADATA-TABLE and METADATA-LOOKUP_TYPE in
COMPACT) and Logout, on the simulator clock.

Legacy server habits it reproduces on demand: a row cap per search (``max_rows``: the answer
stops there and says ``<MAXROWS/>``) and a server that ignores ``Offset`` (``ignore_offset``), so
a client can only reach the rest of a large result by narrowing its query; replies sent as
``text/plain`` or without a content type (``reply_content_type``); timestamps kept to the
millisecond (``millis``: ``2026-11-27T09:00:05.512``), as RETS 1.8 allows; listings whose photos
GetObject answers with a cut-off multipart body (``broken_photos``). Search answers rows in
ListingID order, not by timestamp, as many servers do.

Admin (JSON): ``POST /admin/touch`` ``{"keys": [...] | "count": n, "changes": {...}}``,
``POST /admin/delete`` ``{"keys": [...]}``, ``POST /admin/expire-sessions``,
``GET|POST /admin/settings`` ``{"max_rows": n|null, "ignore_offset": bool, "session_idle": s,
"reply_content_type": str|null, "millis": bool}``,
beside the base simulator's stats, faults and rate limit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadastre.simulators.base import SimStats, Simulator, json_response, read_json
from cadastre.simulators.rets import replies
from cadastre.simulators.rets.dmql import DmqlError, UnknownField, parse
from cadastre.simulators.rets.login import RetsLogins
from cadastre.simulators.rets.records import (
    CLASS,
    DEFAULT_TIMEZONE,
    FIELDS,
    KEY_FIELD,
    LOOKUPS,
    RESOURCE,
    TIMESTAMP_FIELD,
    field_map,
    format_datetime,
    generate,
    photo_bytes,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping
    from datetime import datetime

    from starlette.requests import Request

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile
    from cadastre.simulators.ratelimit import RateLimit

BOUNDARY = "rets-sim-boundary"


@dataclass
class RetsStats(SimStats):
    searches: int = 0
    objects_requests: int = 0
    metadata_requests: int = 0
    logouts: int = 0


class RetsSimulator(Simulator):
    rate_limited_paths = ("/rets",)
    stats: RetsStats

    def __init__(
        self,
        records: int = 200,
        seed: int = 7,
        clock: Clock | None = None,
        *,
        username: str = "demo-user",
        password: str = "demo-password",  # noqa: S107 - the simulator's published demo login
        timezone: str = DEFAULT_TIMEZONE,
        max_rows: int | None = None,
        ignore_offset: bool = False,
        session_idle: float = 1800.0,
        millis: bool = False,
        rate_limit: RateLimit | None = None,
        faults: FaultProfile | None = None,
    ) -> None:
        if records < 0 or (max_rows is not None and max_rows < 1) or session_idle <= 0:
            raise ValueError("records >= 0, max_rows >= 1 (or None), session_idle > 0")
        self.zone = ZoneInfo(timezone)
        self.max_rows = max_rows
        self.ignore_offset = ignore_offset
        self.fields = field_map(FIELDS)
        self.millis = millis  # timestamps with milliseconds (generated and touched ones)
        self._records = generate(records, seed, self.zone, millis=millis)
        self.malformed: set[str] = set()  # keys whose DATA row is served with a column too many
        self.broken_photos: set[str] = set()  # keys whose GetObject answer is cut off
        self.reply_content_type: str | None = "text/xml"  # None: replies without one
        self._touch_rng = random.Random(seed + 3)  # noqa: S311 - reproducible, not secret
        super().__init__(clock=clock, rate_limit=rate_limit, faults=faults)
        self.stats = RetsStats()
        self.logins = RetsLogins(self.clock, username, password, session_idle)

    def __repr__(self) -> str:
        return f"RetsSimulator(records={len(self._records)})"

    # ---------------------------------------------------------------------- views for tests

    @property
    def records(self) -> Mapping[str, Mapping[str, Any]]:
        return self._records

    def local_time(self, when: datetime) -> str:
        return format_datetime(when, self.zone, millis=self.millis)

    # ----------------------------------------------------------------------- moving the MLS

    def touch(
        self, keys: Iterable[str] | None = None, count: int | None = None,
        changes: Mapping[str, Any] | None = None, at: datetime | None = None,
    ) -> list[str]:  # fmt: skip
        """Modify records now (or ``at``): their ModificationTimestamp moves, ``changes`` apply."""
        if (keys is None) == (count is None):
            raise ValueError("touch takes keys or count")
        chosen = (
            list(dict.fromkeys(keys)) if keys is not None
            else self._touch_rng.sample(sorted(self._records), count or 0)
        )  # fmt: skip
        unknown = [k for k in chosen if k not in self._records]
        bad = set(changes or {}) - set(self.fields)
        if unknown or bad:
            raise ValueError(f"unknown keys {unknown[:5]} or fields {sorted(bad)}")
        stamp = format_datetime(at or self.clock.now(), self.zone, millis=self.millis)
        for key in chosen:
            record = self._records[key]
            record.update({k: "" if v is None else str(v) for k, v in (changes or {}).items()})
            record[TIMESTAMP_FIELD] = stamp
        return chosen

    def delete(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if self._records.pop(k, None) is not None]

    # ------------------------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        both = ["GET", "POST"]
        return [
            Route("/rets/login", self._typed(self._login), methods=both),
            Route("/rets/search", self._typed(self._search), methods=both),
            Route("/rets/getobject", self._typed(self._getobject), methods=both),
            Route("/rets/getmetadata", self._typed(self._getmetadata), methods=both),
            Route("/rets/logout", self._typed(self._logout), methods=both),
            Route("/photos/{name}", self._photo, methods=["GET"]),
        ]

    def _typed(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with its RETS replies sent as ``reply_content_type`` says (servers send
        them as text/plain, or with no content type at all)."""

        async def endpoint(request: Request) -> Response:
            response = await handler(request)
            if response.headers.get("content-type", "").startswith("text/xml"):
                if self.reply_content_type is None:
                    del response.headers["content-type"]
                else:
                    response.headers["content-type"] = self.reply_content_type
            return response

        return endpoint

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/touch", self._admin_touch, methods=["POST"]),
            Route("/admin/delete", self._admin_delete, methods=["POST"]),
            Route("/admin/expire-sessions", self._admin_expire, methods=["POST"]),
            Route("/admin/settings", self._admin_settings, methods=["GET", "POST"]),
        ]

    async def _login(self, request: Request) -> Response:
        return self.logins.login(request)

    async def _session(self, request: Request) -> Response | None:
        """None when the caller is logged in; otherwise the answer to send."""
        found = self.logins.check(request)
        if isinstance(found, Response):
            return found
        return replies.reply(replies.NOT_LOGGED_IN) if found is None else None

    async def _search(self, request: Request) -> Response:
        if (refused := await self._session(request)) is not None:
            return refused
        self.stats.searches += 1
        args = await _arguments(request)
        if args.get("SearchType") != RESOURCE or args.get("Class") != CLASS:
            return replies.reply(replies.MISC_SEARCH_ERROR, "SearchType=Property, Class=RES")
        if args.get("QueryType", "DMQL2") not in {"DMQL", "DMQL2"}:
            return replies.reply(replies.MISC_SEARCH_ERROR, "QueryType must be DMQL2")
        form = args.get("Format", "COMPACT")
        if form not in {"COMPACT", "COMPACT-DECODED"}:
            return replies.reply(replies.MISC_SEARCH_ERROR, f"Format {form} is not supported")
        try:
            predicate = parse(args.get("Query", ""), self.fields)
            count_mode = int(args.get("Count", "0"))
            limit = None if args.get("Limit", "NONE") == "NONE" else int(args["Limit"])
            offset = int(args.get("Offset", "1"))
        except UnknownField as exc:
            return replies.reply(replies.UNKNOWN_QUERY_FIELD, str(exc))
        except DmqlError as exc:
            return replies.reply(replies.INVALID_QUERY_SYNTAX, f"Invalid Query Syntax: {exc}")
        except ValueError:
            return replies.reply(replies.MISC_SEARCH_ERROR, "Count, Limit, Offset are integers")
        columns = [f.name for f in FIELDS]
        if args.get("Select"):
            columns = [c.strip() for c in args["Select"].split(",") if c.strip()]
            unknown = [c for c in columns if c not in self.fields]
            if unknown:
                return replies.reply(20202, f"Invalid Select: {unknown[0]}")
        matched = [self._records[k] for k in sorted(self._records) if predicate(self._records[k])]
        if not matched:
            return replies.reply(replies.NO_RECORDS_FOUND)
        start = 0 if self.ignore_offset else max(offset - 1, 0)
        caps = [c for c in (limit, self.max_rows) if c is not None]
        end = min([start + c for c in caps] + [len(matched)])
        chosen = matched[start:end]
        decoded = form == "COMPACT-DECODED"
        rows = [self._row(r, columns, decoded=decoded) for r in chosen]
        body = replies.compact(
            columns, rows, count=len(matched) if count_mode in (1, 2) else None,
            max_rows=end < len(matched), include_data=count_mode != 2,
        )  # fmt: skip
        return replies.xml(body)

    def _row(self, record: Mapping[str, Any], columns: list[str], *, decoded: bool) -> list[str]:
        values = []
        for name in columns:
            value = str(record.get(name, ""))
            lookup = self.fields[name].lookup
            if decoded and lookup is not None and value:
                value = ",".join(LOOKUPS[lookup].get(code, code) for code in value.split(","))
            values.append(value)
        if record[KEY_FIELD] in self.malformed:
            values.append("surplus")
        return values

    async def _getobject(self, request: Request) -> Response:
        if (refused := await self._session(request)) is not None:
            return refused
        self.stats.objects_requests += 1
        args = await _arguments(request)
        if args.get("Resource") != RESOURCE or args.get("Type") != "Photo":
            return replies.reply(20400, "Invalid Resource or Type: Property, Photo")
        parts: list[tuple[dict[str, str], bytes]] = []
        by_location = args.get("Location") == "1"
        for wanted in args.get("ID", "").split(","):
            key, _, which = wanted.strip().partition(":")
            record = self._records.get(key)
            count = int(record.get("PhotoCount") or 0) if record else 0
            indexes = (
                range(1, count + 1) if which in {"*", ""}
                else [int(i) for i in which.split(":") if i.isdigit() and 1 <= int(i) <= count]
            )  # fmt: skip
            for index in indexes:
                headers = {"Content-ID": key, "Object-ID": str(index), "Content-Type": "image/jpeg",
                           "Content-Description": f"Photo {index} of {key}"}  # fmt: skip
                if by_location:  # the object's address instead of its bytes
                    headers["Location"] = (
                        f"{str(request.base_url).rstrip('/')}/photos/{key}-{index}.jpg"
                    )
                    parts.append((headers, b""))
                else:
                    parts.append((headers, photo_bytes(key, index)))
        if not parts:
            return replies.reply(replies.NO_OBJECT_FOUND)
        if self.broken_photos & {h["Content-ID"] for h, _ in parts}:
            media = f'multipart/related; boundary="{BOUNDARY}"; type="image/jpeg"'
            cut = f"--{BOUNDARY}\r\nContent-ID: ".encode()  # the connection dropped here
            return Response(cut, headers={**replies.HEADERS, "Content-Type": media})
        if len(parts) == 1:
            headers, content = parts[0]
            return Response(content, headers={**replies.HEADERS, **headers})
        return replies.multipart(parts, BOUNDARY)

    async def _photo(self, request: Request) -> Response:
        """A photo by the address ``Location=1`` gave (a CDN: no session needed)."""
        key, _, index = request.path_params["name"].removesuffix(".jpg").rpartition("-")
        record = self._records.get(key)
        if (
            record is None
            or not index.isdigit()
            or not 1 <= int(index) <= int(record.get("PhotoCount") or 0)
        ):
            return Response(status_code=404)
        return Response(photo_bytes(key, int(index)), media_type="image/jpeg")

    async def _getmetadata(self, request: Request) -> Response:
        if (refused := await self._session(request)) is not None:
            return refused
        self.stats.metadata_requests += 1
        args = await _arguments(request)
        kind, ident = args.get("Type", ""), args.get("ID", "")
        if kind == "METADATA-TABLE" and ident in {f"{RESOURCE}:{CLASS}", "*", "0"}:
            columns = ["SystemName", "StandardName", "LongName", "DataType", "MaximumLength",
                       "Interpretation", "LookupName", "Searchable"]  # fmt: skip
            rows = [
                [f.name, "", f.name, f.data_type, str(f.length or ""),
                 "Lookup" if f.lookup else "", f.lookup or "", "1"]
                for f in self.fields.values()
            ]  # fmt: skip
            attrs = {"Resource": RESOURCE, "Class": CLASS, "Version": "1.00.000"}
            block = replies.metadata_block("METADATA-TABLE", attrs, columns, rows)
            return replies.xml(replies.envelope(replies.SUCCESS, block))
        if kind == "METADATA-LOOKUP_TYPE" and ident.startswith(f"{RESOURCE}:"):
            name = ident.split(":", 1)[1]
            names = list(LOOKUPS) if name in {"*", "0"} else [name]
            blocks = ""
            for lookup in names:
                if lookup not in LOOKUPS:
                    return replies.reply(replies.NO_METADATA_FOUND)
                rows = [[long, code, code] for code, long in LOOKUPS[lookup].items()]
                attrs = {"Resource": RESOURCE, "Lookup": lookup, "Version": "1.00.000"}
                blocks += replies.metadata_block(
                    "METADATA-LOOKUP_TYPE", attrs, ["LongValue", "ShortValue", "Value"], rows
                )
            return replies.xml(replies.envelope(replies.SUCCESS, blocks))
        return replies.reply(replies.NO_METADATA_FOUND)

    async def _logout(self, request: Request) -> Response:
        if not self.logins.logout(request):
            return replies.reply(replies.NOT_LOGGED_IN)
        self.stats.logouts += 1
        return replies.xml(replies.envelope(replies.SUCCESS, "<RETS-RESPONSE>\n</RETS-RESPONSE>\n"))

    # -------------------------------------------------------------------------------- admin

    async def _admin_touch(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object")
            touched = self.touch(keys=body.get("keys"), count=body.get("count"),
                                 changes=body.get("changes"))  # fmt: skip
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"touched": touched})

    async def _admin_delete(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            keys = body.get("keys") if isinstance(body, dict) else None
            if not isinstance(keys, list):
                raise ValueError('the body is {"keys": [...]}')
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"deleted": self.delete(str(k) for k in keys)})

    async def _admin_expire(self, request: Request) -> Response:
        return json_response({"expired": self.logins.expire_all()})

    async def _admin_settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await read_json(request)
                known = {"max_rows", "ignore_offset", "session_idle", "reply_content_type",
                         "millis"}  # fmt: skip
                if not isinstance(body, dict) or set(body) - known:
                    raise ValueError(f"the body holds {', '.join(sorted(known))}")
                if "max_rows" in body:
                    rows = body["max_rows"]
                    if rows is not None and (not isinstance(rows, int) or rows < 1):
                        raise ValueError("max_rows is an integer >= 1 or null")
                    self.max_rows = rows
                if "ignore_offset" in body:
                    self.ignore_offset = bool(body["ignore_offset"])
                if "session_idle" in body:
                    self.logins.session_idle = float(body["session_idle"])
                if "reply_content_type" in body:
                    kind = body["reply_content_type"]
                    if kind is not None and not isinstance(kind, str):
                        raise ValueError("reply_content_type is a string or null")
                    self.reply_content_type = kind
                if "millis" in body:
                    self.millis = bool(body["millis"])
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response({"max_rows": self.max_rows, "ignore_offset": self.ignore_offset,
                              "session_idle": self.logins.session_idle,
                              "reply_content_type": self.reply_content_type,
                              "millis": self.millis})  # fmt: skip


async def _arguments(request: Request) -> dict[str, str]:
    """RETS arguments come in the query (GET) or as a form (POST)."""
    args = dict(request.query_params)
    if request.method == "POST":
        args |= dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    return args
