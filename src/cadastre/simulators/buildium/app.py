"""``BuildiumSimulator``: Buildium's Open API v1 for rental units, leases and tenants, faithful to
the vendor's OpenAPI document where it speaks (see README.md beside the simulators) and to its
habits where integrators meet them:

- auth: ``x-buildium-client-id`` + ``x-buildium-client-secret`` on every request, else 401;
- 10 requests a second (sliding, on the simulator clock), the 11th answered 429 *without*
  ``Retry-After`` (the vendor says "retry after a short interval (~200ms)");
- lists: ``limit`` (default 50, 1..1000; a larger one silently becomes 1000), ``offset``
  (zero-based), the total in ``X-Total-Count``, ``orderby=Prop [asc|desc],...`` (property names in
  any case); ``Limit``/``Offset`` spelled in another case are a 404; a query string over 4,096
  characters is a 500 (not a 414); ``lastupdatedfrom``/``lastupdatedto`` (UTC
  ``YYYY-MM-DDTHH:MM:SSZ``, both inclusive) filter on each object's last update, which leases
  serve as ``LastUpdatedDateTime`` and tenants and units do not serve at all;
- writes: POST creates (201 + ``Location``), PUT replaces the whole object (``messages.py``);
  no ETag, no idempotency key: a POST sent twice creates two objects; 409 where the vendor
  documents it (a tenant added to a lease that is no longer active, here);
- errors: ``{"UserMessage", "ErrorCode", "Errors": [{"Key", "Value"}]}`` (``ApiErrorResponse``).

Every change (API or "UI") fires a webhook (``webhooks.py``); UI changes are not API writes and are
not counted as such. ``fail_writes(n, after_commit=...)`` makes the next n writes answer 500,
before anything is stored or after the write took effect (the answer is what is lost).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from starlette.routing import BaseRoute, Route

from cadastre.simulators.base import SimStats, Simulator, json_response, read_json
from cadastre.simulators.buildium.messages import (
    POST,
    PUT,
    Invalid,
    check,
    lease_fields,
    tenant_fields,
    unit_fields,
)
from cadastre.simulators.buildium.records import (
    ACCOUNT_ID,
    RESOURCES,
    Book,
    Row,
    format_time,
    parse_filter_time,
    seed_book,
)
from cadastre.simulators.buildium.webhooks import WebhookEmitter, WebhookSettings
from cadastre.simulators.ratelimit import RateLimit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile

VENDOR_RATE_LIMIT = RateLimit(10, 1.0)
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
MAX_QUERY = 4096
PATHS = {"tenants": "/v1/leases/tenants", "units": "/v1/rentals/units", "leases": "/v1/leases"}
EVENTS = {"tenants": ("LeaseTenant", "TenantId"), "units": ("RentalUnit", "UnitId"),
          "leases": ("Lease", "LeaseId")}  # fmt: skip
WriteMode = Literal["before", "after"]


def api_error(user_message: str, code: str, errors: list[dict[str, str]] | None = None) -> Any:
    return {"UserMessage": user_message, "ErrorCode": code, "Errors": errors or []}


def error_response(status: int, message: str, code: str,
                   errors: list[dict[str, str]] | None = None) -> Response:  # fmt: skip
    return json_response(api_error(message, code, errors), status)


@dataclass
class BuildiumStats(SimStats):
    api_creates: Counter[str] = field(default_factory=Counter)  # by resource
    api_updates: Counter[str] = field(default_factory=Counter)  # by resource
    puts: Counter[str] = field(default_factory=Counter)  # "tenants/12" -> PUTs of that object
    ui_changes: int = 0  # edits, creates and deletions "in the UI" (not API writes)
    auth_refused: int = 0
    writes_failed: int = 0  # writes answered 500 by fail_writes (before or after commit)

    def reset(self) -> None:
        super().reset()
        self.api_creates.clear()
        self.api_updates.clear()
        self.puts.clear()
        self.ui_changes = self.auth_refused = self.writes_failed = 0


class BuildiumSimulator(Simulator):
    rate_limited_paths: ClassVar[tuple[str, ...]] = ("/v1/",)

    def __init__(
        self,
        *,
        units: int = 40,
        seed: int = 7,
        clock: Clock | None = None,
        rate_limit: RateLimit | Literal["vendor"] | None = "vendor",
        faults: FaultProfile | None = None,
        client_id: str = "demo-client-id",
        client_secret: str = "demo-client-secret",  # noqa: S107 - the simulator's demo key
        account_id: int = ACCOUNT_ID,
    ) -> None:
        self.book: Book = seed_book(units, seed)
        self.account_id = account_id
        self._client = (client_id, client_secret)
        self._fail: tuple[int, WriteMode] = (0, "before")
        limit = VENDOR_RATE_LIMIT if rate_limit == "vendor" else rate_limit
        super().__init__(clock=clock, rate_limit=limit, faults=faults)
        self.stats: BuildiumStats = BuildiumStats()
        self.webhooks = WebhookEmitter(self.clock)

    def throttled(self, retry_after: int) -> tuple[Any, dict[str, str]]:
        # Buildium documents the 429 and no Retry-After: "retry after a short interval".
        return api_error("Too many requests. Please retry after a short interval.",
                         "TooManyRequests"), {}  # fmt: skip

    # -------------------------------------------------------------------------- python API

    def get(self, resource: str, id: int) -> dict[str, Any] | None:
        """The object as the API serves it (None when absent)."""
        row = self.book.rows(resource).get(id)
        return self.book.served(resource, row) if row is not None else None

    def ids(self, resource: str) -> list[int]:
        return sorted(self.book.rows(resource))

    def updated_at(self, resource: str, id: int) -> datetime:
        return self.book.rows(resource)[id].updated

    def fail_writes(self, count: int, *, after_commit: bool = False) -> None:
        """The next ``count`` POST/PUT answer 500: before anything is stored, or (after_commit)
        once the write took effect."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count is a whole number >= 0")
        self._fail = (count, "after" if after_commit else "before")

    def ui_edit(self, resource: str, id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """A person edits an object in Buildium's UI: fields as stored (``PhoneNumbers`` a list
        of ``{"Number", "Type"}``); fires ``<Entity>.Updated``."""
        row = self._row(resource, id)
        if not isinstance(changes, dict) or not changes:
            raise ValueError("changes is a non-empty object of the object's fields")
        unknown = set(changes) - set(row.data)
        if unknown:
            raise ValueError(f"{resource} have no fields {sorted(unknown)}")
        row.data.update(changes)
        self._touch(resource, row)
        self.stats.ui_changes += 1
        self._event(resource, "Updated", id)
        return self.book.served(resource, row)

    def ui_create(self, resource: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A person adds an object in the UI (a tenant needs ``LeaseId``); fires ``.Created``."""
        if resource != "tenants":
            raise ValueError("the UI creates tenants here (units and leases: use the API)")
        lease = fields.get("LeaseId")
        if lease not in self.book.leases:
            raise ValueError("LeaseId names no lease")
        body = {"Address": self.book.units[self.book.leases[lease].data["UnitId"]].data["Address"],
                **fields}  # fmt: skip
        message = check(body, POST["tenants"])
        row = self._create_tenant(message)
        self.stats.ui_changes += 1
        return self.book.served("tenants", row)

    def ui_delete(self, resource: str, id: int) -> None:
        """A person deletes an object in the UI; fires ``.Deleted``."""
        self._row(resource, id)
        del self.book.rows(resource)[id]
        if resource == "tenants":
            for people in self.book.members.values():
                if id in people:
                    people.remove(id)
        elif resource == "leases":
            self.book.members.pop(id, None)
        self.stats.ui_changes += 1
        self._event(resource, "Deleted", id)

    def _row(self, resource: str, id: int) -> Row:
        if resource not in RESOURCES:
            raise ValueError(f"resource is one of {list(RESOURCES)}")
        row = self.book.rows(resource).get(id)
        if row is None:
            raise ValueError(f"no {resource} {id}")
        return row

    def _touch(self, resource: str, row: Row) -> None:
        row.updated = self.clock.now()

    def _event(self, resource: str, operation: str, id: int) -> None:
        entity, key = EVENTS[resource]
        self.webhooks.emit({
            "EventName": f"{entity}.{operation}",
            "EventDateTime": format_time(self.clock.now()),
            "AccountId": self.account_id,
            key: id,
        })  # fmt: skip

    # ------------------------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        for resource in ("tenants", "units", "leases"):  # tenants first: /v1/leases/tenants
            path = PATHS[resource]
            out.append(Route(path, self._endpoint(resource, self._collection),
                             methods=["GET", "POST"]))  # fmt: skip
            out.append(Route(path + "/{id:int}", self._endpoint(resource, self._one),
                             methods=["GET", "PUT"]))  # fmt: skip
        return out

    def _endpoint(
        self, resource: str, handler: Callable[[Request, str], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if len(request.scope.get("query_string", b"")) > MAX_QUERY:
                return error_response(500, "An unexpected error occurred.", "InternalServerError")
            client_id = request.headers.get("x-buildium-client-id")
            secret = request.headers.get("x-buildium-client-secret")
            if (client_id, secret) != self._client:
                self.stats.auth_refused += 1
                return error_response(401, "The API key couldn't be authorized.", "Unauthorized")
            for name in request.query_params:
                if name.lower() in ("limit", "offset") and name not in ("limit", "offset"):
                    return error_response(404, "Resource not found.", "NotFound")
            return await handler(request, resource)

        return endpoint

    async def _collection(self, request: Request, resource: str) -> Response:
        if request.method == "POST":
            return await self._create(request, resource)
        return self._list(request, resource)

    async def _one(self, request: Request, resource: str) -> Response:
        id = int(request.path_params["id"])
        row = self.book.rows(resource).get(id)
        if row is None:
            return error_response(404, "Resource not found.", "NotFound")
        if request.method == "PUT":
            return await self._update(request, resource, row)
        return json_response(self.book.served(resource, row))

    # ------------------------------------------------------------------------------- lists

    def _list(self, request: Request, resource: str) -> Response:
        params = request.query_params
        try:
            limit = _whole(params.get("limit"), "limit", DEFAULT_LIMIT)
            offset = _whole(params.get("offset"), "offset", 0)
            if limit < 1:
                raise Invalid([{"Key": "limit", "Value": "limit must be between 1 and 1000."}])
            if offset < 0:
                raise Invalid([{"Key": "offset", "Value": "offset must be 0 or more."}])
            rows = self._filtered(resource, params)
        except Invalid as exc:
            return error_response(400, "The request was invalid.", "ValidationFailed", exc.errors)
        served = [self.book.served(resource, row) for row in rows]
        try:
            served = _ordered(served, params.get("orderby"))
        except Invalid as exc:
            return error_response(400, "The request was invalid.", "ValidationFailed", exc.errors)
        page = served[offset : offset + min(limit, MAX_LIMIT)]
        return json_response(page, headers={"X-Total-Count": str(len(served))})

    def _filtered(self, resource: str, params: Any) -> list[Row]:
        rows = list(self.book.rows(resource).values())
        since, until = _when(params, "lastupdatedfrom"), _when(params, "lastupdatedto")
        if since is not None:
            rows = [r for r in rows if r.updated >= since]
        if until is not None:
            rows = [r for r in rows if r.updated <= until]
        wanted = _ids(params, "propertyids")
        if wanted is not None:
            rows = [r for r in rows if self._property_of(resource, r) in wanted]
        if resource == "tenants":
            email = params.get("email")
            if email:
                rows = [r for r in rows if email.lower() in str(r.data.get("Email") or "").lower()]
            units = _ids(params, "unitids")
            if units is not None:
                rows = [r for r in rows if any(self.book.leases[lease].data["UnitId"] in units
                        for lease in self.book.leases_of(r.id))]  # fmt: skip
        if resource == "leases":
            statuses = params.getlist("leasestatuses")
            if statuses:
                rows = [r for r in rows if r.data["LeaseStatus"] in statuses]
        return rows

    def _property_of(self, resource: str, row: Row) -> int | None:
        book = self.book
        if resource == "units":
            return int(row.data["PropertyId"])
        if resource == "leases":
            unit_ids = [row.data["UnitId"]]
        else:
            unit_ids = [book.leases[lease].data["UnitId"] for lease in book.leases_of(row.id)]
        for unit in unit_ids:
            if unit in book.units:
                return int(book.units[unit].data["PropertyId"])
        return None

    # ------------------------------------------------------------------------------ writes

    async def _body(self, request: Request) -> Any:
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != "application/json":
            raise _Unsupported
        try:
            return await read_json(request)
        except ValueError:
            raise Invalid([{"Key": "", "Value": "The request body is not valid JSON."}]) from None

    def _failing(self) -> WriteMode | None:
        count, mode = self._fail
        if count <= 0:
            return None
        self._fail = (count - 1, mode)
        self.stats.writes_failed += 1
        return mode

    async def _update(self, request: Request, resource: str, row: Row) -> Response:
        try:
            message = check(await self._body(request), PUT[resource])
            if resource == "leases" and message["UnitId"] not in self.book.units:
                raise Invalid([{"Key": "UnitId", "Value": "The unit does not exist."}])
        except _Unsupported:
            return error_response(415, "Unsupported content type.", "UnsupportedMediaType")
        except Invalid as exc:
            return error_response(400, "The request was invalid.", "ValidationFailed", exc.errors)
        failing = self._failing()
        if failing == "before":
            return error_response(500, "An unexpected error occurred.", "InternalServerError")
        fields = {"tenants": tenant_fields, "units": unit_fields,
                  "leases": lease_fields}[resource](message)  # fmt: skip
        row.data.update(fields)
        self._touch(resource, row)
        self.stats.api_updates[resource] += 1
        self.stats.puts[f"{resource}/{row.id}"] += 1
        self._event(resource, "Updated", row.id)
        if failing == "after":
            return error_response(500, "An unexpected error occurred.", "InternalServerError")
        return json_response(self.book.served(resource, row))

    async def _create(self, request: Request, resource: str) -> Response:
        try:
            message = check(await self._body(request), POST[resource])
        except _Unsupported:
            return error_response(415, "Unsupported content type.", "UnsupportedMediaType")
        except Invalid as exc:
            return error_response(400, "The request was invalid.", "ValidationFailed", exc.errors)
        refused = self._refusal(resource, message)
        if refused is not None:
            return refused
        failing = self._failing()
        if failing == "before":
            return error_response(500, "An unexpected error occurred.", "InternalServerError")
        if resource == "tenants":
            row = self._create_tenant(message)
        elif resource == "units":
            row = self._create_unit(message)
        else:
            row = self._create_lease(message)
        self.stats.api_creates[resource] += 1
        if failing == "after":
            return error_response(500, "An unexpected error occurred.", "InternalServerError")
        location = f"{request.base_url}{PATHS[resource].lstrip('/')}/{row.id}"
        return json_response(self.book.served(resource, row), 201, {"Location": location})

    def _refusal(self, resource: str, message: dict[str, Any]) -> Response | None:
        book = self.book
        if resource == "tenants":
            lease = book.leases.get(message["LeaseId"])
            if lease is None:
                return error_response(404, "The lease was not found.", "NotFound")
            if lease.data["LeaseStatus"] == "Past":
                return error_response(409, "Tenants cannot be added to a past lease.",
                                      "Conflict")  # fmt: skip
        elif resource == "units":
            properties = {int(u.data["PropertyId"]) for u in book.units.values()}
            if message["PropertyId"] not in properties:
                return error_response(404, "The rental property was not found.", "NotFound")
            taken = {u.data["UnitNumber"] for u in book.units.values()
                     if u.data["PropertyId"] == message["PropertyId"]}  # fmt: skip
            if message["UnitNumber"] in taken:
                return error_response(
                    422, "The request data could not be used.", "UnprocessableEntity",
                    [{"Key": "UnitNumber", "Value": "must be unique within the property"}],
                )  # fmt: skip
        else:
            if message["UnitId"] not in book.units:
                return error_response(404, "The unit was not found.", "NotFound")
            missing = [t for t in message["TenantIds"] if t not in book.tenants]
            if missing:
                return error_response(404, f"Tenants {missing} were not found.", "NotFound")
        return None

    def _create_tenant(self, message: dict[str, Any]) -> Row:
        book, now = self.book, self.clock.now()
        tenant_id = book.new_id("tenants")
        row = Row(tenant_id, {**tenant_fields(message), "SMSOptInStatus": None}, now, now)
        book.tenants[tenant_id] = row
        book.members.setdefault(message["LeaseId"], []).append(tenant_id)
        self._touch("leases", book.leases[message["LeaseId"]])
        self._event("tenants", "Created", tenant_id)
        return row

    def _create_unit(self, message: dict[str, Any]) -> Row:
        book, now = self.book, self.clock.now()
        unit_id = book.new_id("units")
        property_id = message["PropertyId"]
        building = next((u.data["BuildingName"] for u in book.units.values()
                         if u.data["PropertyId"] == property_id), None)  # fmt: skip
        data = {"PropertyId": property_id, "BuildingName": building, **unit_fields(message),
                "IsUnitListed": False}  # fmt: skip
        row = book.units[unit_id] = Row(unit_id, data, now, now)
        self._event("units", "Created", unit_id)
        return row

    def _create_lease(self, message: dict[str, Any]) -> Row:
        book, now = self.book, self.clock.now()
        lease_id = book.new_id("leases")
        start = message["LeaseFromDate"]
        data = {
            **lease_fields({**message, "IsEvictionPending": False}),
            "LeaseStatus": "Future" if start > now.date().isoformat() else "Active",
            "RenewalOfferStatus": None,
            "AccountDetails": {"SecurityDeposit": None, "Rent": None},
            "PaymentDueDay": 1,
            "MoveInDate": start,
        }
        row = book.leases[lease_id] = Row(lease_id, data, now, now)
        book.members[lease_id] = list(message["TenantIds"])
        self._event("leases", "Created", lease_id)
        for tenant in message["Tenants"]:
            self._create_tenant({**check(tenant, PUT["tenants"]), "LeaseId": lease_id})
        return row

    # ------------------------------------------------------------------------------- admin

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/ui/edit", self._admin(self._ui_edit), methods=["POST"]),
            Route("/admin/ui/create", self._admin(self._ui_create), methods=["POST"]),
            Route("/admin/ui/delete", self._admin(self._ui_delete), methods=["POST"]),
            Route("/admin/fail-writes", self._admin(self._fail_writes), methods=["POST"]),
            Route("/admin/records/{resource}/{id:int}", self._record, methods=["GET"]),
            Route("/admin/webhooks", self._webhooks, methods=["GET", "POST", "DELETE"]),
            Route("/admin/webhooks/release", self._admin(self._release), methods=["POST"]),
            Route("/admin/webhooks/enable", self._admin(self._enable), methods=["POST"]),
        ]

    def _admin(
        self, handle: Callable[[dict[str, Any]], Any]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await read_json(request)
                body = {} if body is None else body
                if not isinstance(body, dict):
                    raise ValueError("the body is a JSON object")
                return json_response(handle(body))
            except Invalid as exc:
                return error_response(400, str(exc), "ValidationFailed", exc.errors)
            except (ValueError, TypeError, KeyError) as exc:
                return error_response(400, str(exc), "BadRequest")

        return endpoint

    def _ui_edit(self, body: dict[str, Any]) -> Any:
        return self.ui_edit(str(body["resource"]), _int(body["id"]), body["changes"])

    def _ui_create(self, body: dict[str, Any]) -> Any:
        return self.ui_create(str(body["resource"]), body["fields"])

    def _ui_delete(self, body: dict[str, Any]) -> Any:
        self.ui_delete(str(body["resource"]), _int(body["id"]))
        return {"deleted": body["id"]}

    def _fail_writes(self, body: dict[str, Any]) -> Any:
        mode = body.get("mode", "before")
        if mode not in ("before", "after"):
            raise ValueError('mode is "before" or "after"')
        self.fail_writes(body.get("count", 1), after_commit=mode == "after")
        return {"count": self._fail[0], "mode": self._fail[1]}

    async def _record(self, request: Request) -> Response:
        found = self.get(request.path_params["resource"], int(request.path_params["id"])) if (
            request.path_params["resource"] in RESOURCES) else None  # fmt: skip
        if found is None:
            return error_response(404, "Resource not found.", "NotFound")
        return json_response(found)

    def _webhook_state(self) -> dict[str, Any]:
        settings = self.webhooks.settings
        return {
            "subscription": settings.to_json() if settings is not None else None,
            "suspended": self.webhooks.suspended,
            "stats": vars(self.webhooks.stats),
        }

    async def _webhooks(self, request: Request) -> Response:
        if request.method == "DELETE":
            await self.webhooks.stop()
        elif request.method == "POST":
            try:
                body = await read_json(request)
                if not isinstance(body, dict):
                    raise ValueError("the body is a JSON object")
                self.webhooks.configure(WebhookSettings.from_json(body))
            except (ValueError, TypeError) as exc:
                return error_response(400, str(exc), "BadRequest")
        return json_response(self._webhook_state())

    def _release(self, body: dict[str, Any]) -> Any:
        return {"released": self.webhooks.release(str(body.get("order", "fifo")))}

    def _enable(self, body: dict[str, Any]) -> Any:
        self.webhooks.enable()
        return self._webhook_state()


class _Unsupported(Exception):
    pass


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("id is a whole number")
    return value


def _whole(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise Invalid([{"Key": name, "Value": f"{name} must be a whole number."}]) from None


def _when(params: Any, name: str) -> datetime | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        return parse_filter_time(text)
    except ValueError as exc:
        raise Invalid([{"Key": name, "Value": str(exc)}]) from None


def _ids(params: Any, name: str) -> set[int] | None:
    values = [part for value in params.getlist(name) for part in value.split(",") if part]
    if not values:
        return None
    try:
        return {int(v) for v in values}
    except ValueError:
        raise Invalid([{"Key": name, "Value": f"{name} are whole numbers."}]) from None


def _ordered(served: list[dict[str, Any]], orderby: str | None) -> list[dict[str, Any]]:
    """``orderby=Prop [asc|desc],...``: property names in any case (the parameter's own name is
    case-sensitive); default: by Id."""
    if not orderby:
        return sorted(served, key=lambda item: item["Id"])
    keys: list[tuple[str, bool]] = []
    names = {name.lower(): name for name in (served[0] if served else {})}
    for part in orderby.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in (
                "asc", "desc")):  # fmt: skip
            raise Invalid([{"Key": "orderby", "Value": f"cannot sort by {part.strip()!r}"}])
        name = names.get(words[0].lower())
        if served and name is None:
            raise Invalid([{"Key": "orderby", "Value": f"{words[0]} is not a property"}])
        keys.append((name or words[0], len(words) == 2 and words[1].lower() == "desc"))
    out = list(served)
    for name, descending in reversed(keys):  # stable sorts, the last key first
        out.sort(key=functools.partial(_sort_key, name), reverse=descending)
    return out


def _sort_key(name: str, item: dict[str, Any]) -> tuple[int, Any]:
    return _sortable(item.get(name))


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, dict | list):
        return (1, orjson.dumps(value))
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, str(value).lower())
