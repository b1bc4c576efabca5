"""The QuickBooks simulator's admin endpoints (JSON, no auth; never rate limited or faulted).

- ``POST /admin/ui/{entity}`` ``{"op": "create" | "update" | "delete", "id"?, "fields"?: {...},
  "realm"?}``: a person edits the company in QuickBooks (no SyncToken, not an API write; a
  webhook goes out). Answers the object.
- ``POST /admin/oauth/grant`` ``{"client_id"?, "realm"?}``: the token answer of a new grant, as
  if the user had connected the app; ``POST /admin/oauth/code`` the same as an authorization code
  ``{"code", "realmId"}``; ``POST /admin/oauth/revoke-all`` ``{"client_id"?}``: the user
  disconnects the app; ``GET|POST /admin/oauth/settings`` ``{"rotate_after": seconds}``.
- ``POST /admin/fail-writes`` ``{"count": n, "mode": "error" | "lost"}``: the next n API writes
  are answered 500 without effect (``error``) or applied with the answer lost (``lost``).
- ``GET|POST /admin/limits`` ``{"per_minute": n | null, "per_second": n | null}``.
- ``GET|POST|DELETE /admin/webhooks`` (``WebhookSettings`` fields; the token is never shown),
  ``POST /admin/webhooks/release`` ``{"order": "fifo" | "reverse" | "shuffle"}``.
- ``POST /admin/clock`` ``{"advance": seconds}``: moves the simulator's clock (a shared fake
  clock, or the offset clock a process runs on) and answers ``{"now"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route

from cadastre.simulators.base import json_response, read_json
from cadastre.simulators.quickbooks.entities import ENTITIES, QboFault
from cadastre.simulators.quickbooks.faults import qbo_time
from cadastre.simulators.quickbooks.oauth import OAuthRefused
from cadastre.simulators.quickbooks.webhooks import WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.quickbooks.app import QuickBooksSimulator

    Handler = Callable[[QuickBooksSimulator, dict[str, Any], Request], Any]


def admin_routes(sim: QuickBooksSimulator) -> list[BaseRoute]:
    return [
        Route("/admin/ui/{entity}", _endpoint(sim, _ui), methods=["POST"]),
        Route("/admin/oauth/grant", _endpoint(sim, _grant), methods=["POST"]),
        Route("/admin/oauth/code", _endpoint(sim, _code), methods=["POST"]),
        Route("/admin/oauth/revoke-all", _endpoint(sim, _revoke_all), methods=["POST"]),
        Route("/admin/oauth/settings", _endpoint(sim, _oauth_settings), methods=["GET", "POST"]),
        Route("/admin/fail-writes", _endpoint(sim, _fail_writes), methods=["POST"]),
        Route("/admin/limits", _endpoint(sim, _limits), methods=["GET", "POST"]),
        Route("/admin/webhooks", _endpoint(sim, _webhooks), methods=["GET", "POST", "DELETE"]),
        Route("/admin/webhooks/release", _endpoint(sim, _release), methods=["POST"]),
        Route("/admin/clock", _endpoint(sim, _clock), methods=["POST"]),
    ]


def _endpoint(
    sim: QuickBooksSimulator, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json(request) if request.method == "POST" else None
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object")
            answer = handler(sim, body, request)
            if hasattr(answer, "__await__"):
                answer = await answer
        except QboFault as fault:
            return sim.fault(fault)
        except OAuthRefused as refused:
            return json_response(refused.body(), refused.status)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": "invalid_request", "message": str(exc)}, 400)
        return json_response(answer)

    return endpoint


def _ui(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    entity = ENTITIES.get(str(request.path_params["entity"]).lower())
    if entity is None:
        raise ValueError(f"entity is one of {sorted(ENTITIES)}")
    fields = body.get("fields", {})
    if not isinstance(fields, dict):
        raise ValueError("fields is a JSON object")
    object_id = body.get("id")
    return sim.ui_edit(entity, str(body.get("op", "")), fields, realm=body.get("realm"),
                       object_id=str(object_id) if object_id is not None else None)  # fmt: skip


def _client(sim: QuickBooksSimulator, body: dict[str, Any]) -> tuple[str, str]:
    client = body.get("client_id") or next(iter(sim.oauth.clients))
    realm = body.get("realm") or next(iter(sim.companies))
    if realm not in sim.companies:
        raise ValueError(f"no company {realm!r}")
    return str(client), str(realm)


def _grant(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    client, realm = _client(sim, body)
    return {**sim.oauth.grant(client, realm), "realmId": realm}


def _code(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    client, realm = _client(sim, body)
    return {"code": sim.oauth.consent(client, realm, body.get("redirect_uri")), "realmId": realm}


def _revoke_all(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"revoked": sim.oauth.revoke_all(body.get("client_id"))}


def _oauth_settings(
    sim: QuickBooksSimulator, body: dict[str, Any], request: Request
) -> dict[str, Any]:
    if "rotate_after" in body:
        value = body["rotate_after"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError("rotate_after is seconds >= 0")
        sim.oauth.rotate_after = float(value)
    return {"rotate_after": sim.oauth.rotate_after}


def _fail_writes(
    sim: QuickBooksSimulator, body: dict[str, Any], request: Request
) -> dict[str, Any]:
    count, mode = body.get("count", 1), body.get("mode", "error")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("count is a whole number >= 0")
    if mode not in ("error", "lost"):
        raise ValueError('mode is "error" or "lost"')
    sim.write_faults.extend([mode] * count)
    return {"pending": list(sim.write_faults)}


def _limits(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    for name in ("per_minute", "per_second"):
        if name in body:
            value = body[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):  # fmt: skip
                raise ValueError(f"{name} is a whole number >= 1 or null")
            setattr(sim, name, value)
    sim._minute.clear()
    sim._second.clear()
    return {"per_minute": sim.per_minute, "per_second": sim.per_second}


async def _webhooks(
    sim: QuickBooksSimulator, body: dict[str, Any], request: Request
) -> dict[str, Any]:
    if request.method == "POST":
        sim.webhooks.configure(WebhookSettings.from_json(body))
    elif request.method == "DELETE":
        await sim.webhooks.stop()
    settings = sim.webhooks.settings
    return {"subscription": settings.to_json() if settings else None,
            "stats": vars(sim.webhooks.stats)}  # fmt: skip


def _release(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"released": sim.webhooks.release(str(body.get("order", "fifo")))}


def _clock(sim: QuickBooksSimulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    seconds = body.get("advance")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError("advance is seconds >= 0")
    advance = getattr(sim.clock, "advance", None)
    if not callable(advance):
        raise ValueError("this simulator's clock cannot be moved")
    advance(float(seconds))
    return {"now": qbo_time(sim.clock.now())}
