"""``HubSpotSimulator``: HubSpot's CRM v3 objects API (contacts, deals) behind OAuth 2.0, with its
rate limits, error bodies, archive and merge behaviour and batched v3-signed webhooks.

Endpoints (bearer token on every ``/crm`` path; ``README.md`` beside ``simulators`` has the
whole list): ``GET|POST /crm/v3/objects/{type}``, ``GET|PATCH|DELETE /crm/v3/objects/{type}/{id}``,
``POST /crm/v3/objects/{type}/search``, ``POST /crm/v3/objects/{type}/batch/read``,
``POST /crm/v3/objects/contacts/batch/upsert``, ``POST /crm/v3/objects/contacts/merge``.

Rate limits, on the simulator clock, per app and account (one of each here): 100 requests in any
10 s (``TEN_SECONDLY_ROLLING``, the Free/Starter burst limit) on every ``/crm`` path, and 4
searches in any second (``SECONDLY``; HubSpot's changelog said 4 per second, later pages say 5:
the stricter one, so a client that keeps under it keeps under either). A refused request gets 429
with HubSpot's body (``policyName``), uses no budget and counts as a violation. Answers on
``/crm`` carry ``X-HubSpot-RateLimit-Max``, ``-Remaining`` and ``-Interval-Milliseconds`` (no
daily headers: HubSpot sends none for OAuth calls).

Every write through the API by our app fires webhooks with ``changeSource: "INTEGRATION"`` and
``sourceId`` = the app id; the admin "UI" edits fire ``CRM_UI`` (or what the edit names, to play
a peer automation). Error bodies: ``{"status": "error", "message", "correlationId",
"category"[, "context"]}``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from starlette.routing import BaseRoute, Route

from cadastre.simulators.answers import send_json
from cadastre.simulators.base import SimStats, Simulator, json_response, read_json
from cadastre.simulators.faults import InjectedLostResponse
from cadastre.simulators.hubspot.oauth import HubSpotOAuth
from cadastre.simulators.hubspot.objects import (
    CONTACTS,
    MODIFIED,
    OBJECT_TYPES,
    SEARCH_CAP,
    SINGULAR,
    Change,
    CrmObject,
    HubSpotError,
    ObjectStore,
    invalid,
    search_filter,
    sort_value,
)
from cadastre.simulators.hubspot.webhooks import WebhookEmitter
from cadastre.simulators.ratelimit import RateLimit, RateLimiter

if TYPE_CHECKING:
    from datetime import datetime

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Message, Receive, Scope, Send

    from cadastre.simulators.clock import Clock

API_LIMIT = RateLimit(100, 10.0)
SEARCH_LIMIT = RateLimit(4, 1.0)
INTEGRATION = "INTEGRATION"
CRM_UI = "CRM_UI"
UI_USER = "userId:501"


@dataclass
class HubSpotStats(SimStats):
    api_writes: int = 0  # writes through the API (UI edits are not counted here)
    creates: int = 0  # records created through the API
    creates_by_id_property: Counter[str] = field(default_factory=Counter)  # email -> creates
    upserts: int = 0  # batch/upsert inputs
    patches: Counter[str] = field(default_factory=Counter)  # object id -> PATCHes
    archives: int = 0
    merges: int = 0
    searches: int = 0
    violations_by_policy: Counter[str] = field(default_factory=Counter)
    unauthorized: int = 0  # 401s
    writes_failed: int = 0  # injected 502s before the write
    writes_lost: int = 0  # applied, then the answer dropped
    ui_edits: int = 0

    def reset(self) -> None:
        super().reset()
        self.api_writes = self.creates = self.upserts = self.archives = self.merges = 0
        self.searches = self.unauthorized = self.writes_failed = self.writes_lost = 0
        self.ui_edits = 0
        for counter in (self.creates_by_id_property, self.patches, self.violations_by_policy):
            counter.clear()


class OffsetClock:
    """The simulator's clock, moved forward by ``/admin/clock`` (a process has no fake clock to
    share): tokens expire and timestamps move as if that much time had passed."""

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self.offset = 0.0

    def now(self) -> datetime:
        from datetime import timedelta

        return self.inner.now() + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.inner.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def error_body(error: HubSpotError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error", "message": error.message, "correlationId": str(uuid.uuid4()),
        "category": error.category,
    }  # fmt: skip
    if error.context:
        body["context"] = error.context
    return body


class HubSpotSimulator(Simulator):
    rate_limited_paths: ClassVar[tuple[str, ...]] = ("/crm/",)

    def __init__(
        self, *, clock: Clock | None = None, client_id: str = "demo-client",
        client_secret: str = "demo-secret",  # noqa: S107 - the simulator's demo app
        portal_id: int = 62515, app_id: int = 4711,
        token_ttl: float = 1800.0, api_limit: RateLimit | None = API_LIMIT,
        search_limit: RateLimit | None = SEARCH_LIMIT, contacts: int = 0, deals: int = 0,
        merge_new_id: bool = False, **base: Any,
    ) -> None:  # fmt: skip
        from cadastre.simulators.clock import SystemClock

        self.offset_clock = OffsetClock(clock if clock is not None else SystemClock())
        self.portal_id, self.app_id = portal_id, app_id
        # HubSpot's current merges make a new record; False: the primary survives (the older way)
        self.merge_new_id = merge_new_id
        self.objects = ObjectStore()
        self.oauth = HubSpotOAuth(self.offset_clock, client_id=client_id,
                                  client_secret=client_secret, token_ttl=token_ttl)  # fmt: skip
        self.webhooks = WebhookEmitter(self.offset_clock, portal_id=portal_id, app_id=app_id)
        self.api_limit = api_limit
        self.search_limit = search_limit
        self._fail_writes: list[str] = []  # "error" | "lost", one per coming write
        super().__init__(clock=self.offset_clock, **base)
        self.stats: HubSpotStats = HubSpotStats()
        if contacts or deals:
            from cadastre.simulators.hubspot.admin import seed

            seed(self, contacts=contacts, deals=deals)

    # ------------------------------------------------------------------ live settings

    @property
    def api_limit(self) -> RateLimit | None:
        return self._api.limit if self._api is not None else None

    @api_limit.setter
    def api_limit(self, limit: RateLimit | None) -> None:
        self._api = RateLimiter(limit) if limit is not None else None

    @property
    def search_limit(self) -> RateLimit | None:
        return self._search.limit if self._search is not None else None

    @search_limit.setter
    def search_limit(self, limit: RateLimit | None) -> None:
        self._search = RateLimiter(limit) if limit is not None else None

    def fail_writes(self, count: int, mode: str = "error") -> None:
        """The next ``count`` API writes fail: ``error`` 502 before anything is applied, ``lost``
        applied and then the connection closed before any answer."""
        if mode not in ("error", "lost") or count < 0:
            raise ValueError('mode is "error" or "lost", count >= 0')
        self._fail_writes = [mode] * count

    # ------------------------------------------------------------------ guard

    async def _guarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        if path.startswith("/crm/"):
            now = self.clock.monotonic()
            searching = path.endswith("/search")
            policy = self._refused_by(searching, now)
            budget = self._budget(now)
            if policy is not None:
                self.stats.rate_limit_violations += 1
                self.stats.violations_by_policy[policy] += 1
                message = f"You have reached your {policy.lower()} limit."
                body = {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                        "correlationId": str(uuid.uuid4()), "policyName": policy,
                        "requestId": str(uuid.uuid4())}  # fmt: skip
                await send_json(send, 429, body, budget)
                return
            send = _with_headers(send, budget)
            if (
                scope.get("method") in ("POST", "PATCH", "DELETE")
                and not searching
                and (not path.endswith("/batch/read") and self._fail_writes)
            ):
                mode = self._fail_writes.pop(0)
                if mode == "error":
                    self.stats.writes_failed += 1
                    error = HubSpotError(502, "Bad Gateway (injected)", "INTERNAL_ERROR")
                    await send_json(send, 502, error_body(error))
                    return
                self.stats.writes_lost += 1
                await self._vendor(scope, receive, _swallow)
                raise InjectedLostResponse
        await super()._guarded(path, scope, receive, send)

    def _refused_by(self, searching: bool, now: float) -> str | None:
        if searching and self._search is not None and self._search.remaining(now) <= 0:
            return "SECONDLY"
        if self._api is not None and self._api.remaining(now) <= 0:
            return "TEN_SECONDLY_ROLLING"
        if searching and self._search is not None:
            self._search.admit(now)
        if self._api is not None:
            self._api.admit(now)
        return None

    def _budget(self, now: float) -> dict[str, str]:
        if self._api is None:
            return {}
        limit = self._api.limit
        return {
            "X-HubSpot-RateLimit-Max": str(limit.requests),
            "X-HubSpot-RateLimit-Remaining": str(max(self._api.remaining(now), 0)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(limit.per * 1000)),
        }

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        base = "/crm/v3/objects/{kind}"
        return [
            Route("/oauth/v1/token", self.oauth.token, methods=["POST"]),
            Route("/oauth/authorize", self.oauth.authorize, methods=["GET"]),
            Route(f"{base}/search", self._api_call(self._search_objects), methods=["POST"]),
            Route(f"{base}/batch/read", self._api_call(self._batch_read), methods=["POST"]),
            Route(f"{base}/batch/upsert", self._api_call(self._batch_upsert), methods=["POST"]),
            Route(f"{base}/merge", self._api_call(self._merge), methods=["POST"]),
            Route(base, self._api_call(self._list_or_create), methods=["GET", "POST"]),
            Route(
                f"{base}/{{object_id}}",
                self._api_call(self._one),
                methods=["GET", "PATCH", "DELETE"],
            ),
        ]

    async def _get_stats(self, request: Request) -> Response:
        shown = self.stats.to_json()
        counts = self.oauth.counts
        shown["oauth"] = {"token_endpoint_calls": counts.token_endpoint_calls,
                          "refreshes": counts.refreshes, "codes_exchanged": counts.codes_exchanged,
                          "refused": counts.refused}  # fmt: skip
        shown["webhooks"] = vars(self.webhooks.stats)
        return json_response(shown)

    def admin_routes(self) -> list[BaseRoute]:
        from cadastre.simulators.hubspot.admin import admin_routes

        return admin_routes(self)

    def _api_call(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                self._authorize(request)
                kind = request.path_params["kind"]
                if kind not in OBJECT_TYPES:
                    raise HubSpotError(400, f"Unable to infer object type from: {kind}",
                                       "VALIDATION_ERROR")  # fmt: skip
                answer: Response = await handler(request, kind)
            except HubSpotError as exc:
                return json_response(error_body(exc), exc.status)
            return answer

        return endpoint

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.oauth.check(token.strip()) is None:
            self.stats.unauthorized += 1
            raise HubSpotError(
                401, "Authentication credentials not found, or the OAuth token used to make "
                "this call expired.", "INVALID_AUTHENTICATION",
            )  # fmt: skip

    # ------------------------------------------------------------------ reading

    async def _list_or_create(self, request: Request, kind: str) -> Response:
        if request.method == "POST":
            body = await _body(request)
            props = self.objects.checked(kind, body.get("properties", {}))
            created = self._create(kind, props, INTEGRATION, str(self.app_id))
            return json_response(created.answer(props.keys() or None), 201)
        params = request.query_params
        limit = _int(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid("limit must be between 1 and 100")
        after = _int(params.get("after", "0"), "after")
        archived = params.get("archived", "false").lower() == "true"
        wanted = _names(params.get("properties"))
        found = [o for o in self.objects.all(kind) if o.archived == archived and int(o.id) >= after]
        page = found[:limit]
        listed: dict[str, Any] = {"results": [o.answer(wanted) for o in page]}
        if len(found) > limit:
            following = found[limit].id
            query = {**dict(params), "after": following}
            link = f"{request.url.replace(query=urlencode(query))}"
            listed["paging"] = {"next": {"after": following, "link": link}}
        return json_response(listed)

    async def _one(self, request: Request, kind: str) -> Response:
        object_id = request.path_params["object_id"]
        if request.method == "GET":
            archived = request.query_params.get("archived", "false").lower() == "true"
            found = self.objects.resolve(kind, object_id, archived=archived)
            return json_response(found.answer(_names(request.query_params.get("properties"))))
        record = self.objects.resolve(kind, object_id)
        if request.method == "DELETE":
            self._archive(record, INTEGRATION, str(self.app_id))
            from starlette.responses import Response as Plain

            return Plain(status_code=204)
        body = await _body(request)
        props = self.objects.checked(kind, body.get("properties", {}))
        self._update(record, props, INTEGRATION, str(self.app_id))
        self.stats.patches[record.id] += 1
        return json_response(record.answer(list(props) or None))

    async def _search_objects(self, request: Request, kind: str) -> Response:
        self.stats.searches += 1
        body = await _body(request)
        matches = search_filter(kind, body)
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 200:
            raise invalid("limit must be between 1 and 200")
        after = _int(str(body.get("after", "0") or "0"), "after")
        if after >= SEARCH_CAP:
            raise invalid(f"Paging past {SEARCH_CAP} results is not supported: narrow the "
                          "query's filters")  # fmt: skip
        found = [o for o in self.objects.live(kind) if matches(o)]
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise invalid("sorts is a list of at most one sort")
        if sorts:
            name, descending = _sort(sorts[0])
            found.sort(key=lambda o: int(o.id))
            found.sort(key=lambda o: sort_value(o, name), reverse=descending)
        wanted = body.get("properties")
        names = [str(n) for n in wanted] if isinstance(wanted, list) and wanted else None
        end = min(after + limit, SEARCH_CAP)
        page = [o.answer(names) for o in found[after:end]]
        answer: dict[str, Any] = {"total": len(found), "results": page}
        if end < len(found):
            answer["paging"] = {"next": {"after": str(end)}}
        return json_response(answer)

    async def _batch_read(self, request: Request, kind: str) -> Response:
        body = await _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) > 100:
            raise invalid("inputs is a list of at most 100 {id}")
        names = body.get("properties")
        names = [str(n) for n in names] if isinstance(names, list) and names else None
        results, missing = [], []
        for item in inputs:
            wanted = str(item.get("id", "")) if isinstance(item, dict) else ""
            try:
                results.append(self.objects.resolve(kind, wanted).answer(names))
            except HubSpotError:
                missing.append(wanted)
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                 "message": "Could not get some objects, they may be deleted "
                                 "or not exist.", "context": {"ids": missing}}]  # fmt: skip
            answer["numErrors"] = 1
        return json_response(answer, 207 if missing else 200)

    # ------------------------------------------------------------------ writing

    async def _batch_upsert(self, request: Request, kind: str) -> Response:
        if kind != CONTACTS:
            raise invalid("deals have no unique property to upsert by")
        body = await _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            raise invalid("inputs is a list of 1 to 100 {idProperty, id, properties}")
        checked = []
        for item in inputs:
            if not isinstance(item, dict) or item.get("idProperty") != "email":
                raise invalid("idProperty must be a unique property: email")
            email = item.get("id")
            if not isinstance(email, str) or "@" not in email:
                raise invalid("id is the email to upsert by")
            checked.append((email, self.objects.checked(kind, item.get("properties", {}))))
        results = []
        for email, props in checked:
            self.stats.upserts += 1
            existing = self.objects.by_email(email)
            if existing is None:
                record = self._create(kind, {**props, "email": email}, INTEGRATION,
                                      str(self.app_id))  # fmt: skip
            else:
                record = existing
                self._update(record, {**props, "email": email}, INTEGRATION, str(self.app_id))
            results.append({**record.answer(list(props) or None), "new": existing is None})
        now = self.clock.now().isoformat()
        return json_response({"status": "COMPLETE", "results": results, "startedAt": now,
                              "completedAt": now})  # fmt: skip

    async def _merge(self, request: Request, kind: str) -> Response:
        if kind != CONTACTS:
            raise invalid("only contacts merge here")
        body = await _body(request)
        primary_id, merged_id = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if not primary_id or not merged_id:
            raise invalid("primaryObjectId and objectIdToMerge are required")
        primary = self.merge(str(primary_id), str(merged_id), INTEGRATION, str(self.app_id))
        return json_response(primary.answer())

    # -------------------------------------------------- the changes, for the API and the UI

    def _emit(self, changes: list[Change], source: str, source_id: str | None) -> None:
        occurred = int(self.clock.now().timestamp() * 1000)
        events = []
        for change in changes:
            kind = SINGULAR[change.kind]
            common = (occurred, source, source_id)
            if change.what == "propertyChange":
                for name, value in change.changed.items():
                    if name != MODIFIED[change.kind]:
                        events.append(
                            self.webhooks.event(
                                f"{kind}.propertyChange",
                                change.object_id,
                                propertyName=name,
                                propertyValue=value if value is not None else "",
                                source=common,
                            )
                        )
            elif change.what == "merge":
                events.append(self.webhooks.event(
                    f"{kind}.merge", change.object_id,
                    primaryObjectId=int(change.primary or change.object_id),
                    mergedObjectIds=[int(i) for i in change.merged],
                    newObjectId=int(change.object_id), numberOfPropertiesMoved=change.moved,
                    source=common))  # fmt: skip
            else:
                events.append(self.webhooks.event(f"{kind}.{change.what}", change.object_id,
                                                  source=common))  # fmt: skip
        self.webhooks.emit(events)

    def _count_write(self, source: str) -> None:
        if source == INTEGRATION:
            self.stats.api_writes += 1

    def _create(self, kind: str, props: dict[str, str | None], source: str,
                source_id: str | None) -> CrmObject:  # fmt: skip
        record = self.objects.create(kind, props, self.clock.now())
        if source == INTEGRATION:
            self.stats.creates += 1
            if kind == CONTACTS and props.get("email"):
                self.stats.creates_by_id_property[str(props["email"]).lower()] += 1
        self._count_write(source)
        self._emit([Change(kind, record.id, "creation")], source, source_id)
        return record

    def _update(self, record: CrmObject, props: dict[str, str | None], source: str,
                source_id: str | None) -> None:  # fmt: skip
        changed = self.objects.update(record, props, self.clock.now())
        self._count_write(source)
        if changed:
            self._emit([Change(record.kind, record.id, "propertyChange", changed)], source,
                       source_id)  # fmt: skip

    def _archive(self, record: CrmObject, source: str, source_id: str | None) -> None:
        self.objects.archive(record, self.clock.now())
        self.stats.archives += source == INTEGRATION
        self._count_write(source)
        self._emit([Change(record.kind, record.id, "deletion")], source, source_id)

    def merge(self, primary_id: str, merged_id: str, source: str = CRM_UI,
              source_id: str | None = UI_USER) -> CrmObject:  # fmt: skip
        primary = self.objects.resolve(CONTACTS, primary_id)
        merged = self.objects.resolve(CONTACTS, merged_id)
        if self.merge_new_id:
            survivor, moved = self.objects.merge_into_new(primary, merged, self.clock.now())
        else:
            survivor, moved = primary, self.objects.merge(primary, merged, self.clock.now())
        self.stats.merges += source == INTEGRATION
        self._count_write(source)
        self._emit([Change(CONTACTS, survivor.id, "merge", merged=(merged.id,), moved=moved,
                           primary=primary.id)], source, source_id)  # fmt: skip
        return survivor

    # -------------------------------------------------- "the UI" (admin, and Python for tests)

    def ui_create(self, kind: str, properties: dict[str, Any], *, source: str = CRM_UI,
                  source_id: str | None = UI_USER) -> CrmObject:  # fmt: skip
        self.stats.ui_edits += 1
        return self._create(kind, self.objects.checked(kind, properties), source, source_id)

    def ui_edit(self, kind: str, object_id: str, properties: dict[str, Any], *,
                source: str = CRM_UI, source_id: str | None = UI_USER) -> CrmObject:  # fmt: skip
        self.stats.ui_edits += 1
        record = self.objects.resolve(kind, object_id)
        self._update(record, self.objects.checked(kind, properties), source, source_id)
        return record

    def ui_archive(self, kind: str, object_id: str) -> CrmObject:
        self.stats.ui_edits += 1
        record = self.objects.resolve(kind, object_id)
        self._archive(record, CRM_UI, UI_USER)
        return record

    def ui_restore(self, kind: str, object_id: str) -> CrmObject:
        self.stats.ui_edits += 1
        record = self.objects.resolve(kind, object_id, archived=True)
        self.objects.restore(record, self.clock.now())
        self._emit([Change(kind, record.id, "restore")], CRM_UI, UI_USER)
        return record

    def get(self, kind: str, object_id: str) -> CrmObject:
        """The record as the vendor holds it (merges followed; archived ones too)."""
        try:
            return self.objects.resolve(kind, object_id)
        except HubSpotError:
            return self.objects.resolve(kind, object_id, archived=True)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except ValueError as exc:
        raise invalid(f"Invalid input JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("Invalid input JSON: the body is an object")
    return body


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise invalid(f"{name} is a whole number") from None


def _names(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [n.strip() for n in text.split(",") if n.strip()]


def _sort(raw: Any) -> tuple[str, bool]:
    if isinstance(raw, str):
        return raw.lstrip("-"), raw.startswith("-")
    if isinstance(raw, dict) and isinstance(raw.get("propertyName"), str):
        direction = raw.get("direction", "ASCENDING")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise invalid("direction is ASCENDING or DESCENDING")
        return raw["propertyName"], direction == "DESCENDING"
    raise invalid("a sort is {propertyName, direction}")


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *raw]}
        await send(message)

    return sending


async def _swallow(message: Message) -> None:
    return None
