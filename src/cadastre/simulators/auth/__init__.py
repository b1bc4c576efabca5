"""A vendor's authorization server: OAuth 2.0 (authorization code with PKCE, client credentials,
refresh with single_use / sometimes / none rotation), rotating API keys, RETS Basic and Digest,
and a session-cookie login."""

from cadastre.simulators.auth.app import DEFAULT_REDIRECT_URI, AuthSimulator
from cadastre.simulators.auth.oauth import s256
from cadastre.simulators.auth.settings import ROTATIONS, AuthSettings, AuthStats, Rotation

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "ROTATIONS",
    "AuthSettings",
    "AuthSimulator",
    "AuthStats",
    "Rotation",
    "s256",
]
