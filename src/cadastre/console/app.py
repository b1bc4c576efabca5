"""``create_console(hub)``: the console as an ASGI app of its own, which ``create_app`` mounts at
``/console``. Its own app, so its answers are pages, not the API's problem documents, and its
security headers cover it alone.

Every answer carries a strict Content-Security-Policy: everything from the hub itself, no inline
script or style, no frames, forms posting only back here. The one script (sparklines), the
style sheet and the icon are files under ``/console/static`` (the icon is linked from every page,
so the browser never asks for a ``/favicon.ico`` the hub does not have); nothing is fetched from
anywhere else, not even a ``data:`` image. Pages
are not cached (they show live state and carry CSRF tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from cadastre.console.pages import router as pages_router
from cadastre.console.render import HERE, page
from cadastre.console.session import (
    CsrfRefused,
    NotVisible,
    SignInRequired,
    hub_of,
    login_url,
)
from cadastre.console.session import router as session_router

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from cadastre.bootstrap import Hub

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
CSRF_REFUSED = (
    "this form was not sent by a page of this console (its token is missing or stale); reload "
    "the page and try again"
)
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every answer, and ``no-store`` on every page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in HEADERS}
                ]  # fmt: skip
                headers.extend(HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_console(hub: Hub) -> FastAPI:
    console = FastAPI(
        title="Cadastre console", docs_url=None, redoc_url=None, openapi_url=None,
        # as create_app's: FastAPI's own telemetry would put paths, queries and exceptions'
        # texts in spans and logs
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )  # fmt: skip
    console.state.hub = hub
    console.add_middleware(SecurityHeaders)
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(session_router)
    console.include_router(pages_router)

    @console.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(login_url(request), status_code=303)

    @console.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return _error(request, 403, CSRF_REFUSED)

    @console.exception_handler(NotVisible)
    async def not_visible(request: Request, exc: NotVisible) -> Response:
        return _error(request, 404, "there is nothing here")

    @console.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error(request, 404, "there is nothing here")
        if exc.status_code == 405:
            return _error(request, 405, "that cannot be done here")
        return _error(request, exc.status_code, "the request could not be answered")

    @console.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 422, "the request's parameters are not valid")

    return console


def _error(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", now=hub_of(request).clock.now(), status=status,
                title="Not found" if status == 404 else "Not done", message=message)  # fmt: skip
