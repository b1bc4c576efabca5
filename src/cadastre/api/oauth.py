"""``GET /v1/oauth/callback``: where a vendor's consent page sends the person back (RFC 6749
section 4.1.2) after ``cadastre credentials connect``.

It takes no API key - it is a browser redirect from the vendor - so the ``state`` is the proof:
it names tenant and credential, and only a state whose hash the credential holds, issued less than
ten minutes ago and not used yet, is exchanged (with the PKCE verifier) for tokens. Every refusal
is the same kind of 400, and nothing answered or logged repeats the code or the state: the
problem's ``instance`` is the path without its query, and the page is not cached or referred on.
"""

from __future__ import annotations

import html
import logging
import re

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from cadastre.api.auth import hub_of
from cadastre.api.listings import _problem
from cadastre.api.problems import Problem
from cadastre.errors import (
    ConfigurationError,
    CredentialError,
    VendorError,
)

router = APIRouter(prefix="/v1", tags=["oauth"])
_log = logging.getLogger("cadastre.api.oauth")

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")  # RFC 6749's error codes; anything else is not echoed
# The page and the problems carry the code in the URL that led to them: keep them out of caches
# and out of the Referer of anything the page links to.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Connected {name}</title></head>
<body><p>Connected <strong>{name}</strong>; you can close this tab.</p></body></html>
"""


def _refused(detail: str, status: int = 400) -> Problem:
    return Problem(status, detail, headers=_PRIVATE)


@router.get(
    "/oauth/callback",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The credential is connected", "content": {"text/html": {}}},
        400: _problem("The state is unknown, used or expired, or the person denied access"),
        502: _problem("The vendor did not issue tokens for the code"),
    },
    summary="OAuth2 consent callback (a browser redirect from the vendor; no API key)",
)
async def callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    if error is not None:
        said = error if _ERROR_CODE.fullmatch(error) else "an error"
        raise _refused(
            f"the vendor answered {said} instead of a code"
            + ("; access was not granted" if error == "access_denied" else "")
            + ". Run `cadastre credentials connect` again to retry"
        )
    if not code or not state:
        raise _refused("the callback needs both a code and a state")
    hub = hub_of(request)
    try:
        # Checked before any gateway is opened for the credential: an anonymous caller can forge
        # the head of a state, but not a consent in progress.
        stored = await hub.tokens.consent_in_progress(state)
    except CredentialError as exc:  # unknown (whatever the reason), used, or too old
        raise _refused(f"{exc}; run `cadastre credentials connect` again") from None
    tenant, name = stored.tenant, stored.name
    try:
        endpoint, defaults = await hub.token_endpoint(tenant, name)
        await hub.tokens.complete_consent(state, code, endpoint, defaults)
    except ConfigurationError as exc:
        _log.error("consent callback for credential %r of tenant %r: %s", name, tenant, exc)
        raise _refused("the hub cannot complete this consent; see its log", 500) from None
    except CredentialError as exc:
        raise _refused(str(exc)) from None  # unknown, used or too late: the state was checked
    except VendorError as exc:
        _log.warning("consent callback for credential %r of tenant %r: %s", name, tenant, exc)
        raise _refused(
            f"the vendor did not issue tokens ({exc}); run `cadastre credentials connect` again",
            502,
        ) from None
    return HTMLResponse(_PAGE.format(name=html.escape(name)), headers=_PRIVATE)
