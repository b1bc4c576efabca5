"""``QuickBooksSimulator``: QuickBooks Online's Accounting API v3 for one or more companies.

Routes (``/v3/company/{realmId}/...``, bearer token of that realm, ``?minorversion=`` accepted):
``GET /{entity}/{id}``; ``POST /{entity}`` to create (no ``Id``), update (``Id`` + ``SyncToken``,
``sparse: true`` for a partial one) or, with ``?operation=delete``, delete a transaction;
``?requestid=`` (at most 50 characters, unique per company): a repeat is answered with the
stored original answer and has no second effect; ``GET /query?query=...``; ``GET /cdc?entities=
A,B&changedSince=ISO``. Entities: account, customer, payment, journalentry. Every answer on a
company path carries an ``intuit_tid`` header. OAuth lives in ``oauth.py``, admin in
``admin.py``, the entities' rules in ``entities.py``.

Rate limits (on the simulator clock, sliding): 500 requests a minute per realm and 10 a second
per realm and app (the client id behind the token); over either, ``429`` with Intuit's fault
(``ThrottleExceeded``, "Wait 60 seconds") and no ``Retry-After``, counted in
``rate_limit_violations`` and ``throttled`` (``per_minute`` / ``per_second``); a refused request
uses no budget.

CDC answers at most ``cdc_max`` (1,000) objects across the entities asked for. When more changed,
QBO's documentation only says "a maximum of 1,000 objects; query for shorter time periods": here
the answer holds the 1,000 oldest changes (by LastUpdatedTime, then Id), nothing says more are
left, and ``time`` is the server's now. A client that takes ``time`` as its next high-water mark
after a full answer loses the rest; it must move its window start instead.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cadastre.simulators.answers import send_json
from cadastre.simulators.base import SimStats, Simulator, json_response
from cadastre.simulators.faults import InjectedLostResponse
from cadastre.simulators.quickbooks import query as qbo_query
from cadastre.simulators.quickbooks.clock import OffsetClock
from cadastre.simulators.quickbooks.entities import ENTITIES, Change, Company
from cadastre.simulators.quickbooks.faults import (
    QboFault,
    auth_failed,
    invalid,
    missing,
    not_authorized,
    parse_qbo_time,
    qbo_time,
    system_fault,
    throttled,
    transaction_id,
)
from cadastre.simulators.quickbooks.oauth import OAuthRefused, OAuthServer
from cadastre.simulators.quickbooks.seed import seed_company
from cadastre.simulators.quickbooks.webhooks import WebhookEmitter
from cadastre.simulators.ratelimit import RateLimit, RateLimiter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.types import Message, Receive, Scope, Send

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile

DEFAULT_REALM = "9341453050298464"
_COMPANY = re.compile(r"^/v3/company/(?P<realm>[^/]+)(?P<rest>/.*)?$")
_WRITE = re.compile(r"^/v3/company/[^/]+/(account|customer|payment|journalentry)$", re.IGNORECASE)
CDC_DAYS = 30
REQUEST_ID_MAX = 50
MIN_MINOR_VERSION = 75  # since 2025-08-01 anything lower is ignored and 75 is the default


@dataclass
class QboStats(SimStats):
    api_writes: int = 0  # write requests answered by the API (replays included)
    creates: int = 0  # objects created through the API
    creates_by_requestid: Counter[str] = field(default_factory=Counter)
    creates_by_logical_write: Counter[str] = field(default_factory=Counter)  # by body hash
    replays: int = 0  # answers served again for a repeated requestid
    stale_refusals: int = 0  # 5010 answers
    ui_edits: int = 0  # changes made "in the UI" (admin), never counted as API writes
    throttled: Counter[str] = field(default_factory=Counter)  # per_minute, per_second
    writes_failed: int = 0  # injected 500s (nothing applied)
    writes_lost: int = 0  # injected lost answers (applied)
    minor_versions: Counter[str] = field(default_factory=Counter)
    cdc_calls: int = 0
    queries: int = 0

    def reset(self) -> None:
        super().reset()
        for name in ("api_writes", "creates", "replays", "stale_refusals", "ui_edits",
                     "writes_failed", "writes_lost", "cdc_calls", "queries"):  # fmt: skip
            setattr(self, name, 0)
        for counter in (self.creates_by_requestid, self.creates_by_logical_write,
                        self.throttled, self.minor_versions):  # fmt: skip
            counter.clear()


class QuickBooksSimulator(Simulator):
    def __init__(
        self, *, clock: Clock | None = None, realms: tuple[str, ...] = (DEFAULT_REALM,),
        client_id: str = "qbo-client", client_secret: str = "qbo-secret",  # noqa: S107 - the demo app
        per_minute: int | None = 500, per_second: int | None = 10,
        rotate_after: float = 86400.0, seed: bool = True, cdc_max: int = 1000,
        faults: FaultProfile | None = None,
    ) -> None:  # fmt: skip
        # Run alone (a process), it keeps time that ``POST /admin/clock`` can move.
        super().__init__(clock=clock if clock is not None else OffsetClock(), faults=faults)
        self.stats: QboStats = QboStats()
        self.oauth = OAuthServer(self.clock, {client_id: client_secret}, rotate_after=rotate_after)
        self.webhooks = WebhookEmitter(self.clock)
        self.companies = {realm: Company(realm) for realm in realms}
        self.per_minute, self.per_second = per_minute, per_second
        self.cdc_max = cdc_max
        self._minute: dict[str, RateLimiter] = {}
        self._second: dict[tuple[str, str], RateLimiter] = {}
        self._answers: dict[tuple[str, str], tuple[int, bytes]] = {}  # (realm, requestid)
        self.write_faults: deque[str] = deque()  # "error" | "lost", one per coming write
        if seed:
            for company in self.companies.values():
                seed_company(company, self.now() - timedelta(days=2))

    def now(self) -> datetime:
        return self.clock.now().replace(microsecond=0)  # QBO keeps seconds

    def routes(self) -> list[BaseRoute]:
        company = "/v3/company/{realm}"
        return [
            Route("/oauth2/v1/tokens/bearer", self._token, methods=["POST"]),
            Route("/oauth2/v1/tokens/revoke", self._revoke, methods=["POST"]),
            Route("/connect/oauth2", self._authorize, methods=["GET"]),
            Route(f"{company}/query", self._handled(self._query), methods=["GET", "POST"]),
            Route(f"{company}/cdc", self._handled(self._cdc), methods=["GET"]),
            Route(f"{company}/{{entity}}/{{id}}", self._handled(self._read), methods=["GET"]),
            Route(f"{company}/{{entity}}", self._handled(self._write), methods=["POST"]),
        ]

    def admin_routes(self) -> list[BaseRoute]:
        from cadastre.simulators.quickbooks.admin import admin_routes

        return admin_routes(self)

    # ------------------------------------------------------------------- the vendor's guard

    async def _guarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        found = _COMPANY.match(path)
        if found is None:
            await super()._guarded(path, scope, receive, send)
            return
        send = _with_header(send, "intuit_tid", transaction_id())
        realm, app = found["realm"], self._app_of(scope)
        window = self._admit(realm, app)
        if window is not None:
            self.stats.rate_limit_violations += 1
            self.stats.throttled[window] += 1
            await send_json(send, 429, throttled().body(self.now()))
            return
        if scope.get("method") == "POST" and _WRITE.match(path) and self.write_faults:
            mode = self.write_faults.popleft()
            if mode == "lost":  # applied, and the answer never leaves
                self.stats.writes_lost += 1
                await super()._guarded(path, scope, receive, _swallow)
                raise InjectedLostResponse
            self.stats.writes_failed += 1
            await send_json(send, 500, system_fault().body(self.now()))
            return
        await super()._guarded(path, scope, receive, send)

    def _admit(self, realm: str, app: str) -> str | None:
        now = self.clock.monotonic()
        second = minute = None
        if self.per_second is not None:
            second = self._second.setdefault((realm, app), RateLimiter(RateLimit(self.per_second)))
            if second.remaining(now) <= 0:
                return "per_second"
        if self.per_minute is not None:
            minute = self._minute.setdefault(realm, RateLimiter(RateLimit(self.per_minute, 60.0)))
            if minute.remaining(now) <= 0:
                return "per_minute"
        for limiter in (second, minute):
            if limiter is not None:
                limiter.admit(now)
        return None

    def _app_of(self, scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                access = self.oauth.access(token.strip()) if kind.lower() == "bearer" else None
                return access.client_id if access is not None else "unknown"
        return "unknown"

    # ------------------------------------------------------------------------------ OAuth

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            answer = self.oauth.token(
                form, request.headers.get("authorization"), dict(request.headers)
            )
        except OAuthRefused as refused:
            return json_response(refused.body(), refused.status, {"Cache-Control": "no-store"})
        self.stats.tokens_issued += 1
        return json_response(answer, 200, {"Cache-Control": "no-store"})

    async def _revoke(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            client = self.oauth._client(request.headers.get("authorization"))
        except OAuthRefused as refused:
            return json_response(refused.body(), refused.status)
        self.oauth.revoke_token(client, form.get("token", ""))
        return Response(status_code=200)

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        client_id, redirect = params.get("client_id", ""), params.get("redirect_uri", "")
        realm = params.get("realmId") or next(iter(self.companies))
        try:
            code = self.oauth.consent(client_id, realm, redirect or None, params.get("scope", ""))
        except OAuthRefused as refused:
            return json_response(refused.body(), refused.status)
        query = urlencode({"code": code, "state": params.get("state", ""), "realmId": realm})
        return RedirectResponse(f"{redirect}{'&' if '?' in redirect else '?'}{query}", 302)

    # ------------------------------------------------------------------------------ the API

    def _handled(
        self, handler: Callable[[Request, Company], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                company = self._authorized(request)
                minor = request.query_params.get("minorversion")
                if minor is not None:
                    if not minor.isdigit():
                        raise invalid("minorversion", "a whole number")
                    self.stats.minor_versions[str(max(MIN_MINOR_VERSION, int(minor)))] += 1
                return await handler(request, company)
            except QboFault as fault:
                return self.fault(fault)

        return endpoint

    def fault(self, fault: QboFault) -> Response:
        headers = (
            {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'}
            if (fault.status == 401)
            else None
        )
        return json_response(fault.body(self.now()), fault.status, headers)

    def _authorized(self, request: Request) -> Company:
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise auth_failed("Authorization header missing or not a bearer token")
        access = self.oauth.access(token.strip())
        if access is None:
            raise auth_failed("Token expired or invalid")
        realm = request.path_params["realm"]
        company = self.companies.get(realm)
        if company is None or access.realm != realm:
            raise not_authorized("The token is not authorized for this company")
        return company

    def _entity(self, request: Request) -> str:
        entity = ENTITIES.get(str(request.path_params["entity"]).lower())
        if entity is None:
            raise invalid("entity", "not an entity this API serves")
        return entity

    def _ok(self, body: dict[str, Any]) -> Response:
        return json_response({**body, "time": qbo_time(self.now())})

    async def _read(self, request: Request, company: Company) -> Response:
        entity = self._entity(request)
        return self._ok({entity: company.get(entity, request.path_params["id"])})

    async def _write(self, request: Request, company: Company) -> Response:
        entity = self._entity(request)
        requestid = request.query_params.get("requestid")
        if requestid is not None:
            if not requestid or len(requestid) > REQUEST_ID_MAX:
                raise invalid("requestid", f"1 to {REQUEST_ID_MAX} characters")
            stored = self._answers.get((company.realm, requestid))
            if stored is not None:
                self.stats.replays += 1
                self.stats.api_writes += 1
                return Response(stored[1], stored[0], media_type="application/json")
        try:
            body = orjson.loads(await request.body() or b"null")
        except orjson.JSONDecodeError:
            raise invalid("body", "not JSON") from None
        if not isinstance(body, dict):
            raise invalid("body", "a JSON object")
        self.stats.api_writes += 1
        try:
            payload, change = self._apply(entity, company, body, request.query_params)
            response = self._ok({entity: payload})
        except QboFault as fault:
            if fault.code == "5010":
                self.stats.stale_refusals += 1
            response, change = self.fault(fault), None
        if change is not None and change.operation == "Create":
            self.stats.creates += 1
            self.stats.creates_by_logical_write[_fingerprint(entity, body)] += 1
            if requestid is not None:
                self.stats.creates_by_requestid[requestid] += 1
        if requestid is not None:
            self._answers[(company.realm, requestid)] = (response.status_code, bytes(response.body))
        if change is not None:
            self.webhooks.emit(company.realm, [change])
        return response

    def _apply(
        self, entity: str, company: Company, body: dict[str, Any], params: Any
    ) -> tuple[dict[str, Any], Change]:
        now = self.now()
        operation = params.get("operation")
        if operation == "delete":
            stub = company.delete(entity, body, now)
            return stub, Change(entity, stub["Id"], "Delete", now)
        if operation is not None:
            raise invalid("operation", "delete is the only operation here")
        if body.get("Id") not in (None, ""):
            obj = company.update(entity, body, now)
            return obj, Change(entity, obj["Id"], "Update", now)
        obj = company.create(entity, body, now)
        return obj, Change(entity, obj["Id"], "Create", now)

    async def _query(self, request: Request, company: Company) -> Response:
        self.stats.queries += 1
        text = request.query_params.get("query")
        if request.method == "POST":
            text = (await request.body()).decode("utf-8", "replace")
        if not text:
            raise missing("query")
        parsed = qbo_query.parse(text)
        found = qbo_query.run(parsed, list(company.objects[parsed.entity].values()))
        if parsed.count:
            return self._ok({"QueryResponse": {"totalCount": len(found)}})
        page = found[parsed.start - 1 : parsed.start - 1 + parsed.max_results]
        if not page:
            return self._ok({"QueryResponse": {}})
        return self._ok({"QueryResponse": {parsed.entity: page, "startPosition": parsed.start,
                                           "maxResults": len(page)}})  # fmt: skip

    async def _cdc(self, request: Request, company: Company) -> Response:
        self.stats.cdc_calls += 1
        names = [
            n.strip() for n in request.query_params.get("entities", "").split(",") if n.strip()
        ]
        if not names:
            raise missing("entities")
        entities = []
        for name in names:
            entity = ENTITIES.get(name.lower())
            if entity is None:
                raise invalid("entities", f"{name!r} is not an entity CDC serves")
            entities.append(entity)
        since_text = request.query_params.get("changedSince")
        if not since_text:
            raise missing("changedSince")
        try:
            since = parse_qbo_time(since_text)
        except ValueError:
            raise invalid("changedSince", "an ISO 8601 date-time") from None
        now = self.now()
        company.forget_old_deletes(now)
        if now - since > timedelta(days=CDC_DAYS):
            raise QboFault(400, "2040", "Invalid Date",
                           f"changedSince may be at most {CDC_DAYS} days in the past",
                           element="changedSince")  # fmt: skip
        changed = sorted(
            ((when, int(obj["Id"]), entity, obj) for entity in entities
             for when, obj in company.changed_since(entity, since)),
            key=lambda item: (item[0], item[1]),
        )[: self.cdc_max]  # fmt: skip
        grouped: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for _, _, entity, obj in changed:
            grouped[entity].append(obj)
        responses = [
            {entity: objs, "startPosition": 1, "maxResults": len(objs), "totalCount": len(objs)}
            if objs else {}
            for entity, objs in grouped.items()
        ]  # fmt: skip
        return self._ok({"CDCResponse": [{"QueryResponse": responses}]})

    # --------------------------------------------------------------------- "in the UI"

    def ui_edit(
        self, entity: str, op: str, fields: dict[str, Any], *, realm: str | None = None,
        object_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A person changes the company in QuickBooks itself: no SyncToken check, not an API
        write; a webhook is sent as for any change."""
        company = self.companies[realm or next(iter(self.companies))]
        now = self.now()
        if op == "create":
            obj = company.create(entity, fields, now)
            change = Change(entity, obj["Id"], "Create", now)
        elif op == "update":
            obj = company.update(entity, {**fields, "Id": object_id, "sparse": True}, now,
                                 check_token=False)  # fmt: skip
            change = Change(entity, obj["Id"], "Update", now)
        elif op == "delete":
            obj = company.delete(entity, {"Id": object_id}, now, check_token=False)
            change = Change(entity, obj["Id"], "Delete", now)
        else:
            raise ValueError('op is "create", "update" or "delete"')
        self.stats.ui_edits += 1
        self.webhooks.emit(company.realm, [change])
        return obj

    def get(self, entity: str, object_id: str, realm: str | None = None) -> dict[str, Any] | None:
        """The object as held (tests)."""
        company = self.companies[realm or next(iter(self.companies))]
        return company.objects[entity].get(str(object_id))

    async def _get_stats(self, request: Request) -> Response:
        data = self.stats.to_json()
        data["oauth"] = {k: dict(v) if isinstance(v, dict) else v
                         for k, v in vars(self.oauth.stats).items()}  # fmt: skip
        data["webhooks"] = vars(self.webhooks.stats)
        return json_response(data)


def _fingerprint(entity: str, body: dict[str, Any]) -> str:
    canonical = orjson.dumps({"entity": entity, **body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


def _with_header(send: Send, name: str, value: str) -> Send:
    raw = (name.encode(), value.encode())

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), raw]}
        await send(message)

    return sending


async def _swallow(message: Message) -> None:
    return None
