"""Signing in to the console, and what every page asks of a request.

- The session cookie (``cadastre_console``) holds the session token: ``HttpOnly`` (no script
  reads it), ``SameSite=Strict`` (no other site's page sends it), ``Path=/console`` (the API never
  sees it), ``Secure`` when the hub's public URL is https. Only its sha256 is stored.
- Every POST form carries the session's CSRF token, compared in constant time; a POST without
  the right one is refused with 403 and changes nothing. The sign-in form, which has no session
  yet, carries a token that must match a short-lived cookie of its own (a double-submit), so no
  other site can sign a browser in to an account of its choosing.
- A page asked for without a session redirects to the sign-in page, which returns there after.
  Only a path inside the console is followed back (no open redirect).
- A failed sign-in answers the same page, byte for byte, whatever was wrong.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Annotated, cast
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData

from cadastre.console.render import base_of, page
from cadastre.directory import Visitor
from cadastre.directory.operators import MAX_PASSWORD, SIGN_IN_REFUSED
from cadastre.errors import AuthenticationError
from cadastre.ports import Secret

if TYPE_CHECKING:
    from starlette.responses import Response

    from cadastre.bootstrap import Hub

COOKIE = "cadastre_console"
LOGIN_COOKIE = "cadastre_console_login"
LOGIN_COOKIE_SECONDS = 3600

router = APIRouter()


class SignInRequired(Exception):  # a control-flow signal, answered by a redirect
    """No (valid) session: the handler redirects to the sign-in page."""


class CsrfRefused(Exception):  # answered by a 403 page
    """A POST without the session's CSRF token."""


class NotVisible(Exception):  # answered by a 404 page
    """Not there, or not the operator's to see: the same 404 either way."""


def hub_of(request: Request) -> Hub:
    return cast("Hub", request.app.state.hub)


async def signed_in(request: Request) -> Visitor:
    visitor = await hub_of(request).operators.visitor(request.cookies.get(COOKIE))
    if visitor is None:
        raise SignInRequired
    request.state.visitor = visitor
    return visitor


Operator = Annotated[Visitor, Depends(signed_in)]


async def checked_form(request: Request, visitor: Visitor) -> FormData:
    """The POSTed form, once its CSRF token is the session's."""
    form = await request.form()
    given = form.get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), visitor.csrf.encode()):
        raise CsrfRefused
    return form


def login_url(request: Request) -> str:
    """The sign-in page, returning to where the request was going (a GET only: a POST's page
    would be asked for again without its form)."""
    base = base_of(request)
    if request.method != "GET":
        return f"{base}/login"
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{base}/login?next={quote(wanted, safe='')}"


def _safe_next(request: Request, wanted: str | None) -> str:
    base = base_of(request)
    if wanted:
        parts = urlsplit(wanted)
        inside = wanted == base or wanted.startswith(base + "/")
        dots = any(segment in (".", "..") for segment in parts.path.split("/"))
        if (
            inside and not parts.scheme and not parts.netloc and "\\" not in wanted and not dots
            and not wanted.startswith("//") and not parts.path.startswith(f"{base}/login")
        ):  # fmt: skip
            return wanted
    return f"{base}/"


def _secure(request: Request) -> bool:
    return hub_of(request).settings.public_url.startswith("https://")


def _login_page(request: Request, token: str, *, error: str | None, wanted: str) -> Response:
    response = page(
        request, "login.html", now=hub_of(request).clock.now(), title="Sign in",
        login_token=token, error=error, next=wanted,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=LOGIN_COOKIE_SECONDS, path=base_of(request) or "/",
        httponly=True, samesite="strict", secure=_secure(request),
    )  # fmt: skip
    return response


@router.get("/login", name="login")
async def login_form(request: Request, next: str | None = None) -> Response:
    hub = hub_of(request)
    if await hub.operators.visitor(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    token = request.cookies.get(LOGIN_COOKIE) or ""
    if not 20 <= len(token) <= 64:
        token = secrets.token_urlsafe(32)
    return _login_page(request, token, error=None, wanted=_safe_next(request, next))


@router.post("/login")
async def login(request: Request) -> Response:
    hub = hub_of(request)
    form = await request.form()
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    given = form.get("csrf")
    wanted = _safe_next(request, _text(form, "next"))
    if (
        not expected
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        # No page of ours sent this (or its cookie ran out): a fresh form, and nobody signed in.
        fresh = secrets.token_urlsafe(32)
        response = _login_page(
            request, fresh, error="the sign-in form had expired; please sign in again",
            wanted=wanted,
        )  # fmt: skip
        response.status_code = 403
        return response
    username = _text(form, "username")[:64]
    password = _text(form, "password")[: MAX_PASSWORD + 1]
    try:
        signed = await hub.operators.sign_in(username, Secret(password))
    except AuthenticationError:
        return _login_page(request, expected, error=SIGN_IN_REFUSED, wanted=wanted)
    await hub.operators.prune()  # sessions that ran out are forgotten now and then
    response = RedirectResponse(wanted, status_code=303)
    lifetime = (signed.session.expires_at - signed.session.created_at).total_seconds()
    response.set_cookie(
        COOKIE, signed.token, max_age=int(lifetime), path=base_of(request) or "/",
        httponly=True, samesite="strict", secure=_secure(request),
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path=base_of(request) or "/")
    return response


@router.post("/logout", name="logout")
async def logout(request: Request, visitor: Operator) -> Response:
    await checked_form(request, visitor)
    await hub_of(request).operators.sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{base_of(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path=base_of(request) or "/", httponly=True,
                           samesite="strict", secure=_secure(request))  # fmt: skip
    return response


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
