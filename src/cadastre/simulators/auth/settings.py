"""The authorization server's settings (changed live through ``/admin/settings``) and its counters.

Every duration is seconds on the simulator's clock.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from cadastre.simulators.base import SimStats

if TYPE_CHECKING:
    from collections.abc import Mapping

Rotation = Literal["single_use", "sometimes", "none"]
ROTATIONS: tuple[str, ...] = get_args(Rotation)
Consent = Literal["allow", "deny"]
CONSENTS: tuple[str, ...] = get_args(Consent)
HTTP_AUTH_SCHEMES = ("digest", "basic")
DIGEST_ALGORITHMS = ("SHA-256", "MD5")
_DURATIONS = ("token_ttl", "code_ttl", "key_overlap", "nonce_ttl", "session_idle")
_LISTS = ("http_auth", "digest_algorithms")


@dataclass(frozen=True)
class AuthSettings:
    # Refresh tokens: "single_use" (Xero: each refresh kills the token it used, and a used token
    # presented again revokes its whole family), "sometimes" (QuickBooks: a new one every
    # rotate_every-th refresh of a grant, the old one valid until the new one is first used),
    # "none" (the same refresh token forever).
    rotation: Rotation = "single_use"
    rotate_every: int = 3
    token_ttl: float = 1800.0  # access tokens
    refresh_token_ttl: float | None = None  # None: refresh tokens do not expire by age
    code_ttl: float = 60.0  # authorization codes
    consent: Consent = "allow"  # what the simulated user clicks on the consent screen
    key_overlap: float = 3600.0  # how long a rotated API key still works
    nonce_ttl: float = 300.0  # a Digest nonce older than this is answered stale=true
    session_idle: float = 1800.0  # a login session unused this long is gone
    http_auth: tuple[str, ...] = HTTP_AUTH_SCHEMES  # offered on /rets/login, in this order
    digest_algorithms: tuple[str, ...] = DIGEST_ALGORITHMS  # one Digest challenge each, in order

    def __post_init__(self) -> None:
        for name in _LISTS:
            value: object = getattr(self, name)
            if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} is a list of strings")
            object.__setattr__(self, name, tuple(value))
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation is one of {', '.join(ROTATIONS)}")
        if self.consent not in CONSENTS:
            raise ValueError(f"consent is one of {', '.join(CONSENTS)}")
        if self.rotate_every < 1:
            raise ValueError("rotate_every is at least 1")
        durations = [getattr(self, name) for name in _DURATIONS]
        if self.refresh_token_ttl is not None:
            durations.append(self.refresh_token_ttl)
        if any(not math.isfinite(value) or value < 0 for value in durations):
            raise ValueError(f"{', '.join(_DURATIONS)} and refresh_token_ttl are finite, >= 0")
        if self.token_ttl <= 0 or self.code_ttl <= 0:
            raise ValueError("token_ttl and code_ttl are > 0")
        if not self.http_auth or set(self.http_auth) - set(HTTP_AUTH_SCHEMES):
            raise ValueError(f"http_auth is a non-empty list of {', '.join(HTTP_AUTH_SCHEMES)}")
        if set(self.digest_algorithms) - set(DIGEST_ALGORITHMS) or (
            "digest" in self.http_auth and not self.digest_algorithms
        ):
            raise ValueError(f"digest_algorithms is a list of {', '.join(DIGEST_ALGORITHMS)}")

    def updated(self, changes: Mapping[str, Any]) -> AuthSettings:
        """A copy with ``changes`` (JSON values, checked by name and type); the rest is kept."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("rotation", "consent"):
                if not isinstance(value, str):
                    raise ValueError(f"{name} is a string")
            elif name == "rotate_every":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} is an integer")
            elif name in _LISTS:
                if not isinstance(value, list):
                    raise ValueError(f"{name} is a list of strings")
                value = tuple(value)
            elif name == "refresh_token_ttl" and value is None:
                pass
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} is a number")
            else:
                value = float(value)
            values[name] = value
        return replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _LISTS:
            data[name] = list(data[name])
        return data


@dataclass
class AuthStats(SimStats):
    # OAuth (tokens_issued, from SimStats, counts access tokens the token endpoint issued)
    token_endpoint_calls: int = 0  # every request to /oauth/token that reached the vendor
    codes_issued: int = 0  # authorization codes handed out by /oauth/authorize
    refreshes: int = 0  # refresh_token grants that issued tokens
    refresh_token_reuse: int = 0  # a dead refresh token presented again (single_use rotation)
    families_revoked: int = 0  # grants the vendor revoked on reuse (refresh token or code)
    code_reuse: int = 0  # an exchanged authorization code presented again
    invalid_grants: Counter[str] = field(default_factory=Counter)  # by grant_type
    refreshes_refused: int = 0  # answered with the status set by /admin/oauth/refuse-refresh
    token_revocations: int = 0  # RFC 7009 requests to /oauth/revoke
    api_calls: int = 0  # requests to /api/me, accepted or not
    api_refused: int = 0  # ... of which answered 401
    # API keys
    api_key_calls: int = 0  # requests to /api/keyed, accepted or not
    api_key_refused: int = 0  # 401s on /api/keyed and /keys/rotate
    api_key_rotations: int = 0
    # RETS HTTP authentication
    rets_logins: Counter[str] = field(default_factory=Counter)  # "basic", "digest:<algorithm>"
    rets_challenges: int = 0  # 401s to requests that carried no credentials
    rets_refused: int = 0  # 401s to wrong or malformed credentials
    digest_stale: int = 0  # 401 stale=true: a right answer to an old (or replayed) nonce
    # Session cookies
    session_logins: int = 0
    session_login_failures: int = 0
    session_calls: int = 0  # requests to /session/data, accepted or not
    session_refused: int = 0  # ... of which answered 401

    def reset(self) -> None:
        super().reset()
        for name in _COUNTS:
            setattr(self, name, 0)
        self.invalid_grants.clear()
        self.rets_logins.clear()


_COUNTS = tuple(
    f.name
    for f in fields(AuthStats)
    if f.name not in {g.name for g in fields(SimStats)} and f.type == "int"
)
