"""``ServerSpans``: one OpenTelemetry SERVER span per HTTP request the API answers.

The span is named ``<METHOD> <route template>`` (``GET /v1/listings/{listing_id}``), the
template FastAPI matched, read from the scope once the request has been answered; a request no
route matched is named by its method alone. So the names stay few whatever ids the paths carry,
and the raw path, the query string and the headers never reach a span: a query may carry an
OAuth2 code, a header a key. The attributes are the method, the route, the scheme and the
status code; a 5xx marks the span failed (a 4xx is the caller's error, not the server's, as
OpenTelemetry's HTTP conventions have it).

A ``traceparent`` header (W3C Trace Context) makes the span a child of the caller's trace, so a
platform request and what the hub did for it read as one trace.

Vendors' webhooks are answered ahead of FastAPI and of this middleware
(``webhooks_in.IntakeFirst``): a span would cost that path as much again as the rest of it
does; its metrics count it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cadastre.observe import traced

_tracer = trace.get_tracer("cadastre.api")
# RFC 9110's methods and PATCH; any other is "_OTHER" (OpenTelemetry's HTTP conventions), so a
# client cannot mint span names.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                      "PATCH"})  # fmt: skip
_SERVER_ERROR = 500


class _Headers(Getter[Scope]):
    """Reads the propagation headers (``traceparent``, ``tracestate``) of an ASGI scope."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in carrier.get("headers", ()) if k.lower() == wanted]
        return found or None

    def keys(self, carrier: Scope) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier.get("headers", ())]


_HEADERS = _Headers()


class ServerSpans:
    """ASGI middleware: every HTTP request in a SERVER span (``traced_request``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await traced_request(self.app, scope, receive, send)


async def traced_request(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, route: str | None = None
) -> None:
    """Answer the request with ``app`` inside a SERVER span; ``route`` names the template when
    the caller knows it, else it is read from what FastAPI matched."""
    method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
    root = scope.get("root_path", "")
    status = 0

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    attributes = {"http.request.method": method, "url.scheme": scope.get("scheme", "http")}
    parent = propagate.extract(scope, getter=_HEADERS)
    with traced(_tracer, "HTTP" if method == "_OTHER" else method, attributes,
                kind=trace.SpanKind.SERVER, context=parent) as span:  # fmt: skip
        try:
            await app(scope, receive, sending)
        finally:
            template = route or _template(scope, root)
            if template is not None:
                span.set_attribute("http.route", template)
                if method != "_OTHER":
                    span.update_name(f"{method} {template}")
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= _SERVER_ERROR:
                    span.set_status(trace.StatusCode.ERROR)


def _template(scope: Scope, root: str) -> str | None:
    """The matched route's template, behind the prefix of the app it is mounted in (a mounted
    app's routes are relative to it); a mount that matched none of its routes: its prefix."""
    route: Any = scope.get("route")
    mounted = scope.get("root_path", root)
    prefix = mounted[len(root) :] if mounted.startswith(root) else ""
    if isinstance(route, Mount):
        return prefix or route.path
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return prefix + path if isinstance(path, str) else None
