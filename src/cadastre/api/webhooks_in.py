"""``POST /webhooks/{tenant}/{connection}``: where vendors send their webhooks.

No API key: the vendor's signature is the authentication (``cadastre.webhooks.inbox``). The
tenant is in the path because connection names are unique per tenant only (Svix and Nango put an
account id in their webhook URLs for the same reason).

A 200 means the webhook is stored durably (``Webhook-Status: stored``, or ``duplicate`` when its
message was held already); the body is empty (Xero, for one, wants it so). Refusals are RFC 9457
problems with a ``reason``: 401 for anything about the signature or its timestamp, 413 for a body
over the connection's limit, 404 for no such endpoint, 503 when the fault is ours (the store, a
credential that cannot be used): the vendor sends it again later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cadastre.api.problems import Problem, ProblemDetails, problem_response
from cadastre.errors import CadastreError, Transient, WebhookRefused

router = APIRouter(tags=["webhooks"])
PATH = "/webhooks/{tenant}/{connection}"
_PATH = re.compile(r"/webhooks/(?P<tenant>[^/]+)/(?P<connection>[^/]+)")
_log = logging.getLogger("cadastre.api")
WEBHOOK_REFUSED = "urn:cadastre:problem:webhook-refused"
_REFUSALS: dict[int | str, dict[str, object]] = {
    status: {"model": ProblemDetails, "description": description}
    for status, description in (
        (401, "Signature missing or wrong, or its timestamp outside the tolerance"),
        (404, "No connection of that tenant receives webhooks under that name"),
        (413, "Body larger than the connection's max_body_bytes"),
        (503, "Not stored (the store, or the connection's webhook credential): send it again"),
    )
}


@router.post(
    PATH, summary="Receive a vendor webhook", status_code=200, response_class=Response,
    responses={200: {"description": "Stored durably"}, **_REFUSALS},
)  # fmt: skip
async def receive_webhook(tenant: str, connection: str, request: Request) -> Response:
    """Documents the route in OpenAPI; with ``mount`` the requests never reach it."""
    reply = await _answer(request.scope, request.receive, tenant, connection)
    if isinstance(reply, _Stored):
        return Response(status_code=200, headers={"Webhook-Status": reply.status})
    return reply


def mount(app: FastAPI) -> None:
    """Serve the route from an ASGI middleware ahead of the framework: Starlette's request
    objects, FastAPI's parameter machinery, its walk through the other routes and the
    exception middleware were most of a webhook's cost on the hot path (about 700 requests a
    second on the test machine, against 1,300 without them). The APIRouter route stays, for
    the OpenAPI document."""
    app.add_middleware(WebhookIntake)
    app.include_router(router)


class WebhookIntake:
    """``POST /webhooks/{tenant}/{connection}`` answered here; everything else passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = scope["type"] == "http" and scope["method"] == "POST"
        match = _PATH.fullmatch(scope["path"]) if found else None
        if match is None:
            await self.app(scope, receive, send)
            return
        reply: _Stored | Response
        try:
            reply = await _answer(scope, receive, match["tenant"], match["connection"])
        except Exception as exc:  # noqa: BLE001 - CatchAll's job, which sits inside this one
            reply = _failure(exc, scope["path"])
        await reply(scope, receive, send)


class _Stored:
    """The 200, sent as two ASGI messages: a Response object costs more than the rest of it."""

    def __init__(self, stored: bool) -> None:
        self.status = "stored" if stored else "duplicate"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"0"), (b"webhook-status", self.status.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _answer(
    scope: Scope, receive: Receive, tenant: str, connection: str
) -> _Stored | Response:
    hub = scope["app"].state.hub
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    try:
        accepted = await hub.webhooks_in.receive(
            tenant, connection, method=scope["method"], path=path,
            query=scope.get("query_string", b"").decode("latin-1"), headers=headers,
            body=_body(receive),
        )  # fmt: skip
    except ClientDisconnect:
        # The vendor left before sending the whole body (its timeout): nothing was stored and
        # nobody is there to answer; it sends the webhook again.
        return Response(status_code=400)
    except WebhookRefused as refused:
        retry = {"Retry-After": "5"} if refused.status == 503 else {}
        problem = Problem(
            refused.status, str(refused), type=WEBHOOK_REFUSED, title="Webhook refused",
            headers=retry, extra={"reason": refused.reason},
        )  # fmt: skip
        return problem_response(problem, scope["path"])
    return _Stored(accepted.stored)


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _failure(exc: Exception, path: str) -> Response:
    """What ``on_cadastre_error`` and ``CatchAll`` answer, for the requests served here."""
    if isinstance(exc, CadastreError) and isinstance(exc, Transient):
        _log.warning("webhook not stored, temporarily: %s", type(exc).__name__)
        problem = Problem(503, "temporarily unavailable; try again", headers={"Retry-After": "1"})
    else:
        _log.error("webhook request failed", exc_info=exc)
        problem = Problem(500, "internal error")
    return problem_response(problem, path)
