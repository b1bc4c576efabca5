"""RFC 9457 problem details: every error the API answers is ``application/problem+json`` with
``type``, ``title``, ``status``, ``detail`` and ``instance``.

``Problem`` is what route code raises; the handlers below turn FastAPI's and Starlette's own
errors into the same shape, and ``CatchAll`` answers anything unexpected with a 500 that says
nothing of the internals (the traceback goes to the log, through the redacting handler).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cadastre.errors import CadastreError, Transient

PROBLEM_JSON = "application/problem+json"
# Problems with their own meaning get a type of their own; the rest are "about:blank", whose
# title is the status phrase (RFC 9457 section 4.2.1).
INVALID_CURSOR = "urn:cadastre:problem:invalid-cursor"
INVALID_PARAMETERS = "urn:cadastre:problem:invalid-parameters"

_log = logging.getLogger("cadastre.api")


class ProblemDetails(BaseModel):
    """The body of every error response (the OpenAPI document shows this shape)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_response(problem: Problem, instance: str) -> Response:
    body = {
        "type": problem.type, "title": problem.title, "status": problem.status,
        "detail": problem.detail, "instance": instance, **problem.extra,
    }  # fmt: skip
    return Response(
        orjson.dumps(body), problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def _instance(request: Request) -> str:
    return request.url.path  # not the query string: a problem body echoes no parameter values


async def on_problem(request: Request, exc: Problem) -> Response:
    return problem_response(exc, _instance(request))


async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Routing errors (404 no such path, 405 wrong method) and any ``HTTPException``."""
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if detail is None:
        detail = {404: "no such resource", 405: "method not allowed on this resource"}.get(
            exc.status_code, phrase.lower()
        )
    problem = Problem(exc.status_code, detail, headers=exc.headers)
    return problem_response(problem, _instance(request))


async def on_invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """422 naming each bad parameter and what is wrong with it, never the value sent."""
    errors = []
    for error in exc.errors():
        where, *name = error.get("loc", ()) or ("request",)
        errors.append(
            {"in": str(where), "name": ".".join(str(n) for n in name), "problem": error["msg"]}
        )
    names = ", ".join(dict.fromkeys(e["name"] or e["in"] for e in errors))
    problem = Problem(
        422, f"invalid request parameters: {names}", type=INVALID_PARAMETERS,
        title="Invalid request parameters", extra={"errors": errors},
    )  # fmt: skip
    return problem_response(problem, _instance(request))


async def on_cadastre_error(request: Request, exc: CadastreError) -> Response:
    """A store outage is worth a retry (503); any other error of ours reaching here is a bug."""
    if isinstance(exc, Transient):
        _log.warning("request failed, temporarily: %s", type(exc).__name__)
        problem = Problem(503, "temporarily unavailable; try again", headers={"Retry-After": "1"})
    else:
        _log.error("request failed", exc_info=exc)
        problem = Problem(500, "internal error")
    return problem_response(problem, _instance(request))


# Starlette types a handler as taking any Exception; each of these takes the one it is made for.
HANDLERS: Mapping[type[Exception], Callable[..., Awaitable[Response]]] = {
    Problem: on_problem,
    StarletteHTTPException: on_http_error,
    RequestValidationError: on_invalid_request,
    CadastreError: on_cadastre_error,
}


class CatchAll:
    """ASGI middleware: an exception no handler took becomes a plain 500 problem.

    Starlette's own last resort answers in text and then re-raises to the server, which logs the
    traceback itself; this logs it once, through the ``cadastre`` logger and its redaction."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            _log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if started:  # too late for a problem body; let the server drop the connection
                raise
            response = problem_response(Problem(500, "internal error"), scope["path"])
            await response(scope, receive, send)
