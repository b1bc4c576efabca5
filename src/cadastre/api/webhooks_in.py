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
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cadastre.api.problems import Problem, ProblemDetails, problem_response
from cadastre.errors import CadastreError, Transient, WebhookRefused
from cadastre.observe import working_for
from cadastre.webhooks.inbox import Accepted

if TYPE_CHECKING:
    from cadastre.bootstrap import Hub

router = APIRouter(tags=["webhooks"])
PATH = "/webhooks/{tenant}/{connection}"
_PATH = re.compile(r"/webhooks/([^/]+)/([^/]+)")  # tenant, connection
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
    """Documents the route in OpenAPI; ``IntakeFirst`` answers the requests before it."""
    reply = await _answer(request.app.state.hub, request.scope, request.receive, tenant, connection)
    if isinstance(reply, Accepted):
        return Response(status_code=200, headers={"Webhook-Status": _status(reply).decode()})
    return reply


def mount(app: FastAPI) -> None:
    """The route, for the OpenAPI document; an ``IntakeFirst`` app serves it."""
    app.include_router(router)


class IntakeFirst(FastAPI):
    """FastAPI, with ``POST /webhooks/{tenant}/{connection}`` answered before any of it runs.

    Starlette's request objects, FastAPI's parameter machinery and its walk through the other
    routes were most of a webhook's cost (about 700 requests a second on the test machine,
    against 1,300 without them); the layers FastAPI puts around every request (its telemetry
    check, which reads the environment three times, the body-limit and error middleware and
    their ``send`` wrappers) were a sixth of what remained. Nothing of theirs is needed here:
    failures are answered below (``_failure``, as ``CatchAll`` would) and the body limit is
    the connection's. Nor is ``ServerSpans`` (``api.tracing``): an SDK span costs about 100 µs
    of Python on the test machine, more than the intake's own work, and with one the ratio of
    ``bench/webhooks_in.py`` to the bare endpoint fell from 0.41-0.59 to 0.26-0.31.
    ``cadastre_webhooks_received_total`` and ``cadastre_webhooks_refused_total`` count the
    route, and its log lines carry the path's tenant and connection (``observe.context``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                reply: Accepted | Response
                try:
                    with working_for(*match.groups()):
                        reply = await _answer(self.state.hub, scope, receive, *match.groups())
                except Exception as exc:  # noqa: BLE001 - what CatchAll does for the other routes
                    reply = _failure(exc, scope["path"])
                if isinstance(reply, Accepted):
                    # the 200 as two ASGI messages: a Response object costs more than they do
                    headers = [(b"content-length", b"0"), (b"webhook-status", _status(reply))]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                else:
                    await reply(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _status(accepted: Accepted) -> bytes:
    return b"stored" if accepted.stored else b"duplicate"


async def _answer(
    hub: Hub, scope: Scope, receive: Receive, tenant: str, connection: str
) -> Accepted | Response:
    # lower-case names; of a repeated header, the first (reversed: the first written last)
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }
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
    return accepted


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
