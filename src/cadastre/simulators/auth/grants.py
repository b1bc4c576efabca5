"""Access and refresh tokens, grouped in families, with the three refresh-token rotation modes.

A *family* is everything descended from one authorization (a code exchange, or a grant minted by
``/admin/oauth/grant``): its refresh tokens, numbered in the order they were issued, and the access
tokens issued with them. A family keeps ``min_valid``: refresh tokens numbered below it are dead.

- ``single_use``: using refresh token *n* issues *n+1* and moves ``min_valid`` to *n+1*, so *n*
  and everything older die. Presenting a dead one is reuse: the whole family is revoked (every
  refresh and access token in it), as Xero and RFC 6819 section 5.2.2.3 do.
- ``sometimes``: using *n* kills everything older than *n*; every ``rotate_every``-th refresh of
  the family also issues a newer token, which the answer carries from then on. *n* stays good
  until that newer token is first used (QuickBooks). A dead one is plain ``invalid_grant``.
- ``none``: the same refresh token for ever.

Client-credentials tokens belong to no family. Nothing here is logged; reprs give counts only.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadastre.simulators.auth.common import OAuthError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cadastre.simulators.auth.settings import AuthSettings, AuthStats
    from cadastre.simulators.clock import Clock

PRUNE_ABOVE = 4096  # expired access tokens are forgotten once there are more than this many


@dataclass(eq=False)
class Family:
    number: int
    client_id: str
    scope: str
    revoked: bool = False
    refreshes: int = 0
    issued: int = 0  # refresh tokens issued so far; the newest is number issued - 1
    min_valid: int = 0
    current: str = field(default="", repr=False)  # the newest refresh token


@dataclass(eq=False)
class _Refresh:
    family: Family
    number: int
    deadline: float | None


@dataclass(eq=False)
class Access:
    client_id: str
    scope: str
    deadline: float
    family: Family | None


@dataclass(frozen=True)
class Issued:
    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    refresh_token: str | None = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        body["scope"] = self.scope
        return body


class Tokens:
    def __init__(
        self, clock: Clock, settings: Callable[[], AuthSettings], stats: AuthStats
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self._access: dict[str, Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._families: list[Family] = []

    def __repr__(self) -> str:
        return (
            f"Tokens(access={len(self._access)}, refresh={len(self._refresh)}, "
            f"families={len(self._families)})"
        )

    # ------------------------------------------------------------------------------ issuing

    def start_family(self, client_id: str, scope: str) -> tuple[Family, Issued]:
        """A new authorization: its first refresh token and access token."""
        family = Family(number=len(self._families) + 1, client_id=client_id, scope=scope)
        self._families.append(family)
        self._new_refresh(family)
        return family, self._issue(client_id, scope, family)

    def client_credentials(self, client_id: str, scope: str) -> Issued:
        return self._issue(client_id, scope, None)

    def _issue(self, client_id: str, scope: str, family: Family | None) -> Issued:
        now = self._clock.monotonic()
        if len(self._access) > PRUNE_ABOVE:
            self._access = {t: a for t, a in self._access.items() if a.deadline > now}
        ttl = self._settings().token_ttl
        token = secrets.token_urlsafe(32)
        self._access[token] = Access(client_id, scope, now + ttl, family)
        return Issued(
            access_token=token,
            expires_in=math.floor(ttl),
            scope=scope,
            refresh_token=family.current if family is not None else None,
        )

    def _new_refresh(self, family: Family) -> None:
        ttl = self._settings().refresh_token_ttl
        deadline = self._clock.monotonic() + ttl if ttl is not None else None
        token = secrets.token_urlsafe(48)
        self._refresh[token] = _Refresh(family, family.issued, deadline)
        family.issued += 1
        family.current = token

    # ---------------------------------------------------------------------------- refreshing

    def refresh(self, client_id: str, token: str, scope: str | None) -> Issued:
        """The refresh_token grant for an authenticated client; OAuthError when refused."""
        record = self._refresh.get(token)
        if record is None:
            raise OAuthError("invalid_grant", "the refresh token is unknown")
        family = record.family
        if family.client_id != client_id:
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        if family.revoked:
            raise OAuthError("invalid_grant", "the grant has been revoked")
        settings = self._settings()
        if record.number < family.min_valid:
            if settings.rotation == "single_use":
                self._stats.refresh_token_reuse += 1
                self.revoke_family(family)
                self._stats.families_revoked += 1
                raise OAuthError(
                    "invalid_grant", "the refresh token was already used: the grant is revoked"
                )
            raise OAuthError("invalid_grant", "the refresh token has been replaced")
        if record.deadline is not None and self._clock.monotonic() >= record.deadline:
            raise OAuthError("invalid_grant", "the refresh token has expired")
        granted = family.scope
        if scope is not None:
            asked = scope.split()
            if not set(asked) <= set(family.scope.split()):
                raise OAuthError("invalid_scope", "more scope than the grant has")
            granted = " ".join(asked)
        family.refreshes += 1
        if settings.rotation == "single_use":
            self._new_refresh(family)
            family.min_valid = family.issued - 1
        elif settings.rotation == "sometimes":
            family.min_valid = record.number
            if family.refreshes % settings.rotate_every == 0:
                self._new_refresh(family)
        issued = self._issue(client_id, granted, family)
        if settings.rotation == "none":
            issued = Issued(issued.access_token, issued.expires_in, granted, token)
        return issued

    # ------------------------------------------------------------------------ checking, ending

    def check(self, token: str) -> Access | None:
        """The access token's record while it is good; None when unknown, expired or revoked."""
        access = self._access.get(token)
        if access is None or self._clock.monotonic() >= access.deadline:
            return None
        if access.family is not None and access.family.revoked:
            return None
        return access

    def family_of_refresh(self, token: str) -> Family | None:
        record = self._refresh.get(token)
        return record.family if record is not None else None

    def revoke_family(self, family: Family) -> bool:
        """Kill every token of one authorization; False if it was revoked already."""
        if family.revoked:
            return False
        family.revoked = True
        return True

    def revoke_access(self, token: str) -> None:
        self._access.pop(token, None)

    def revoke_client(self, client_id: str | None) -> int:
        """The user disconnects the app (of one client, or every app): its grants die."""
        return sum(
            self.revoke_family(family)
            for family in self._families
            if client_id is None or family.client_id == client_id
        )
