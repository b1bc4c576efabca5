"""Console operators: who may sign in to the operations console, and their sessions.

An operator is cross-tenant data, like a tenant: one with a tenant sees that tenant only, one
without sees every tenant. Passwords are people's, so unlike API key secrets (256 random bits,
a plain SHA-256 is enough) they are kept as scrypt hashes: ``hashlib.scrypt`` with n=2**14, r=8,
p=1 (16 MiB, some tens of milliseconds), a 16-byte random salt per hash, the parameters written
into the stored value so they can be raised later without breaking older hashes. The hash runs in
a worker thread: it is CPU work and must not stall the event loop.

A failed sign-in says the same thing whatever failed (no such operator, wrong password, disabled)
and costs the same: an unknown username is checked against a dummy hash with the same
parameters, so neither the answer nor its timing tells which usernames exist.

A session is a random token (``secrets.token_urlsafe(32)``) handed to the browser in a cookie and
stored only as its sha256; with it goes a CSRF token the console's forms carry. Sessions end
``CADASTRE_CONSOLE_SESSION_HOURS`` after sign-in on the hub's clock, at sign-out, and when the
operator's password changes or the operator is disabled or removed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from cadastre.errors import AuthenticationError, ConfigurationError, NotFound
from cadastre.ports import Operator, OperatorSession

if TYPE_CHECKING:
    from cadastre.ports import Clock, Secret, Store

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # scrypt takes any length; a cap keeps a sign-in form from being a CPU sink
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SIGN_IN_REFUSED = "wrong username or password"  # the one answer to every failed sign-in


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64 without padding)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (compared in constant time); False for a stored
    value that is not an scrypt hash of this form."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        wanted = _unb64(digest)
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(wanted))
    except ValueError:
        return False
    return hmac.compare_digest(got, wanted)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int = HASH_BYTES) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is just enough for n=2**14, r=8; leave room for raised
    # parameters of hashes written later.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=256 * 1024 * 1024
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_DUMMY: list[str] = []  # computed on first use: a hash for unknown usernames to be checked against


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def _check_password(password: str, stored: str | None) -> bool:
    # Checked against the dummy hash when there is no operator, so that every refusal costs one
    # scrypt: an unknown username is not answered sooner. The dummy is made here, in the thread,
    # so the first refusal of a process is no slower either.
    dummy = _dummy_hash()
    return verify_password(password, stored or dummy) and stored is not None


@dataclass(frozen=True)
class SignedIn:
    """A new session: the token goes to the browser once, in a cookie; only its hash is kept."""

    operator: Operator
    session: OperatorSession
    token: str = field(repr=False)


@dataclass(frozen=True)
class Visitor:
    """Who a session cookie belongs to, and what its forms must carry."""

    operator: Operator
    session: OperatorSession

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def sees(self, tenant: str) -> bool:
        return self.operator.tenant is None or self.operator.tenant == tenant


class OperatorService:
    def __init__(self, store: Store, clock: Clock, *, session_hours: float = 12.0) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = timedelta(hours=session_hours)

    # -- operators ----------------------------------------------------------------------

    async def add(self, username: str, password: Secret, *, tenant: str | None = None) -> Operator:
        """``ConfigurationError`` for a bad username or password, ``NotFound`` for a tenant that
        does not exist, ``AlreadyExists`` for a username taken."""
        _check_username(username)
        hashed = await asyncio.to_thread(hash_password, _checked(password))
        if tenant is not None and await self._store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")
        now = self._clock.now()
        operator = Operator(username, tenant, hashed, now, now)
        await self._store.create_operator(operator)
        return operator

    async def all(self) -> list[Operator]:
        return await self._store.list_operators()

    async def get(self, username: str) -> Operator:
        found = await self._store.find_operator(username)
        if found is None:
            raise NotFound(f"operator {username!r} does not exist")
        return found

    async def remove(self, username: str) -> None:
        if not await self._store.delete_operator(username):
            raise NotFound(f"operator {username!r} does not exist")

    async def set_password(self, username: str, password: Secret) -> None:
        """A new password signs the operator out everywhere."""
        await self.get(username)
        hashed = await asyncio.to_thread(hash_password, _checked(password))
        await self._store.update_operator(username, password_hash=hashed)
        await self._store.delete_operator_sessions(username)

    async def set_disabled(self, username: str, disabled: bool) -> Operator:
        """A disabled operator cannot sign in, and is signed out everywhere."""
        changed = await self._store.update_operator(username, disabled=disabled)
        if disabled:
            await self._store.delete_operator_sessions(username)
        return changed

    # -- sessions -----------------------------------------------------------------------

    async def sign_in(self, username: str, password: Secret) -> SignedIn:
        """A new session, or ``AuthenticationError(SIGN_IN_REFUSED)`` whatever was wrong."""
        given = password.reveal()
        found = (
            await self._store.find_operator(username)
            if USERNAME.match(username) and len(given) <= MAX_PASSWORD
            else None
        )
        stored = found.password_hash if found is not None else None
        matches = await asyncio.to_thread(_check_password, given[:MAX_PASSWORD], stored)
        if found is None or found.disabled or not matches:
            raise AuthenticationError(SIGN_IN_REFUSED)
        now = self._clock.now()
        token = secrets.token_urlsafe(32)
        session = OperatorSession(
            token_hash(token), found.username, secrets.token_urlsafe(32), now, now + self._lifetime
        )
        await self._store.create_operator_session(session)
        return SignedIn(found, session, token)

    async def visitor(self, token: str | None) -> Visitor | None:
        """The signed-in operator of a session token, or None: no token, an unknown or expired
        session, or an operator since removed or disabled."""
        if not token or len(token) > 128:
            return None
        session = await self._store.find_operator_session(token_hash(token))
        if session is None:
            return None
        if session.expires_at <= self._clock.now():
            await self._store.delete_operator_session(session.token_hash)
            return None
        operator = await self._store.find_operator(session.operator)
        if operator is None or operator.disabled:
            return None
        return Visitor(operator, session)

    async def sign_out(self, token: str | None) -> None:
        if token and len(token) <= 128:
            await self._store.delete_operator_session(token_hash(token))

    async def prune(self) -> int:
        """Forget expired sessions; how many."""
        return await self._store.prune_operator_sessions(before=self._clock.now())


def _check_username(username: str) -> None:
    if not USERNAME.match(username):
        raise ConfigurationError(
            f"operator name {username!r} must be 1-64 characters of letters, digits and "
            "'_', '.', '@', '-', starting with a letter or digit"
        )


def _checked(password: Secret) -> str:
    value = password.reveal()
    if len(value) < MIN_PASSWORD:
        raise ConfigurationError(f"a password must be at least {MIN_PASSWORD} characters long")
    if len(value) > MAX_PASSWORD:
        raise ConfigurationError(f"a password must be at most {MAX_PASSWORD} characters long")
    if value != value.strip() or any(ord(ch) < 32 for ch in value):
        raise ConfigurationError(
            "a password must not start or end with spaces, nor hold control characters"
        )
    return value
