"""Bearer API keys: ``Authorization: Bearer cad_<key id>_<secret>``.

Every failure is the same 401 with ``WWW-Authenticate: Bearer`` (RFC 6750), so a caller learns
nothing about which key ids exist. The presented key is wrapped in a ``Secret`` at once and never
reaches a log line, an error message or a response.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cadastre.api.problems import Problem
from cadastre.bootstrap import Hub
from cadastre.errors import AuthenticationError
from cadastre.ports import ApiKey, ApiKeyScope, Secret

bearer = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="cad_<key id>_<secret>",
    description="A tenant API key (`cadastre keys create`); it scopes every read to its tenant.",
    auto_error=False,  # a missing key answers with our 401 problem, not FastAPI's error
)


def hub_of(request: Request) -> Hub:
    return cast("Hub", request.app.state.hub)


def _unauthorized(detail: str, error: str | None = None) -> Problem:
    challenge = 'Bearer realm="cadastre"' + (f', error="{error}"' if error else "")
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


async def reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The caller's key, which must be valid and unrevoked (every key may read)."""
    if credentials is None:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    presented = Secret(credentials.credentials)
    try:
        return await hub_of(request).keys.authenticate(presented, need=ApiKeyScope.READ)
    except AuthenticationError:
        raise _unauthorized("the API key is invalid or revoked", "invalid_token") from None


Reader = Annotated[ApiKey, Depends(reader)]
