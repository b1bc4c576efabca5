"""``TokenManager``: the lifecycle of every credential a gateway puts on a request.

Access tokens (OAuth2) are refreshed before they expire (``skew`` seconds early) and single-flight:
callers in one process queue on an ``asyncio.Lock`` per credential, processes on the
``LockBackend`` (a file lock on one machine, Redis across machines). Whoever gets the lock first
re-reads the stored credential: if another process refreshed it meanwhile, it takes that token
instead of refreshing again.

Refresh tokens are handled as the strictest vendors demand (Xero's are single-use and a reuse
revokes the whole family):

1. before a refresh token is sent, ``refresh_started_at`` is committed on the row;
2. the answer - new access token and, when the vendor rotated it, the new refresh token - is
   committed, and the marker cleared, before any caller gets the new access token;
3. a refresher that finds the marker set (its predecessor died, or its answer was lost) does not
   send the token again: the vendor may have rotated it. The credential becomes ``needs_reauth``
   with one ``cadastre.alert.raised.v1`` event, unless its meta says the vendor allows reuse.

A refused refresh (``invalid_grant``, 401) marks the credential ``needs_reauth`` with one alert and
stops: no further token requests until a person connects it again. A transient failure (5xx, 429,
no answer from a vendor that allows reuse) starts a cooldown - 5 s doubling to 10 min - during
which callers get ``VendorUnavailable`` at once, so a failing token endpoint is not stormed.

Static secrets (API keys, passwords) are held in memory once decrypted and re-checked against the
row's version every ``recheck`` seconds (a metadata read, not a decryption), so a key rotated by
another process is picked up well inside the vendor's overlap window.

This module is long (~640 lines) because every path that sends a credential-changing request
(refresh, key rotation, consent exchange) shares one lock, one cooldown and one ``needs_reauth``
step; the consent flow is the part that could move to a module of its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import orjson

from cadastre import failpoints
from cadastre.contract.events import EventEnvelope
from cadastre.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    CredentialError,
    CredentialNeedsReauth,
    RequestNotSent,
    VendorAuthRefused,
    VendorError,
    VendorProtocolError,
    VendorUnavailable,
)
from cadastre.observe import SECRETS
from cadastre.ports import CredentialStatus, Secret
from cadastre.vault.oauth import pkce_pair, read_tokens, refusal, token_request
from cadastre.vault.schemes import Scheme

if TYPE_CHECKING:
    from cadastre.ports import Clock, LockBackend, StoredCredential, TokenEndpoint
    from cadastre.vault.service import Vault

_OAUTH = {Scheme.OAUTH2_CLIENT_CREDENTIALS, Scheme.OAUTH2_AUTHORIZATION_CODE}
CONSENT_SECONDS = 600.0  # how long a consent URL from ``connect`` stays good
FRESH = 30.0  # an access token refused younger than this is not refreshed for it
GATEWAY_TIMEOUT = 504


@dataclass
class _Held:
    token: Secret
    version: int
    held_since: float  # clock.monotonic() when this process took it
    good_until: (
        float | None
    )  # clock.monotonic() past which the token is refreshed; None: until refused


@dataclass
class _Static:
    fields: dict[str, Secret]
    version: int
    checked: float  # clock.monotonic() of the last version check


@dataclass(frozen=True)
class Defaults:
    """What the connector knows when the credential does not say: the vendor's token URL."""

    token_url: str | None = None
    scope: str | None = None


class TokenManager:
    def __init__(
        self,
        vault: Vault,
        locks: LockBackend,
        clock: Clock,
        *,
        skew: float = 60.0,
        recheck: float = 30.0,
        lock_wait: float = 60.0,
        lock_lease: float = 30.0,
        cooldown: tuple[float, float] = (5.0, 600.0),
    ) -> None:
        self.vault = vault
        self._locks = locks
        self._clock = clock
        self._skew = skew
        self._recheck = recheck
        self._lock_wait = lock_wait
        self._lock_lease = lock_lease
        self._cooldown_base, self._cooldown_max = cooldown
        self._held: dict[tuple[str, str], _Held] = {}
        self._static: dict[tuple[str, str], _Static] = {}
        self._refused: dict[tuple[str, str], int] = {}  # versions whose access token was refused
        self._local: dict[tuple[str, str], asyncio.Lock] = {}
        self._cooling: dict[tuple[str, str], tuple[float, int]] = {}  # until, failures in a row
        self._fresh_refusal: dict[tuple[str, str], float] = {}  # when a young token was refused
        self.refreshes = 0  # token requests sent by this process (tests and metrics read it)

    def __repr__(self) -> str:
        return f"TokenManager(held={len(self._held)}, skew={self._skew})"

    # ------------------------------------------------------------------ OAuth2 access tokens

    async def access_token(
        self, tenant: str, name: str, endpoint: TokenEndpoint, *, actor: str,
        defaults: Defaults = Defaults(),
    ) -> Secret:  # fmt: skip
        key = (tenant, name)
        if (token := self._still_good(key)) is not None:
            return token
        lock = self._local.setdefault(key, asyncio.Lock())
        async with lock:
            if (token := self._still_good(key)) is not None:
                return token
            stored = await self.vault.stored(tenant, name)
            if (token := await self._take_stored(stored, actor)) is not None:
                return token
            async with self._locks.hold(
                f"credential:{tenant}:{name}", wait=self._lock_wait, lease=self._lock_lease
            ):
                # Whoever held the lock before us may have refreshed: re-read before refreshing.
                stored = await self.vault.stored(tenant, name)
                if (token := await self._take_stored(stored, actor)) is not None:
                    return token
                return await self._refresh(stored, endpoint, actor, defaults)

    async def refused(self, tenant: str, name: str, token: Secret | None) -> None:
        """The vendor answered 401 to ``token``: forget it (only it - a concurrent caller may hold
        its successor already) and do not take the same stored version again."""
        key = (tenant, name)
        held = self._held.get(key)
        if held is not None and (token is None or held.token == token):
            now = self._clock.monotonic()
            if token is not None and now - held.held_since < FRESH:
                # A token refused within seconds of being issued: once, it may have been revoked
                # early, and is replaced; twice within FRESH, the refusal is not about the token
                # (a scope, a permission), so it is kept and calls fail instead of refreshing
                # once per call.
                if now - self._fresh_refusal.get(key, -FRESH) < FRESH:
                    return
                self._fresh_refusal[key] = now
            del self._held[key]
            self._refused[key] = held.version
        static = self._static.pop(key, None)
        if static is not None:
            self._refused[key] = static.version

    def _still_good(self, key: tuple[str, str]) -> Secret | None:
        held = self._held.get(key)
        if held is None:
            return None
        if held.good_until is not None and self._clock.monotonic() >= held.good_until:
            return None
        return held.token

    async def _take_stored(self, stored: StoredCredential, actor: str) -> Secret | None:
        """The stored access token if it is still good and not refused; decrypting it is a read
        and is audited."""
        _usable(stored)
        key = (stored.tenant, stored.name)
        if "access_token" not in stored.secrets or self._refused.get(key) == stored.version:
            return None
        good_until = self._good_until(stored)
        if good_until is not None and self._clock.monotonic() >= good_until:
            return None
        opened = await self.vault.open(
            stored.tenant, stored.name, actor=actor, purpose="call", fields=("access_token",)
        )
        token = opened.field("access_token")
        self._held[key] = _Held(token, stored.version, self._clock.monotonic(), good_until)
        return token

    def _good_until(self, stored: StoredCredential) -> float | None:
        if stored.expires_at is None:
            return None
        left = (stored.expires_at - self._clock.now()).total_seconds()
        return self._clock.monotonic() + left - self._skew

    async def _refresh(
        self, stored: StoredCredential, endpoint: TokenEndpoint, actor: str, defaults: Defaults
    ) -> Secret:
        key = (stored.tenant, stored.name)
        scheme = Scheme(stored.scheme)
        if scheme not in _OAUTH:
            raise ConfigurationError(f"credential {stored.name!r} ({scheme}) holds no OAuth2 token")
        self._check_cooldown(key, stored.name)
        token_url = stored.meta.get("token_url") or defaults.token_url
        if not token_url:
            raise ConfigurationError(f"credential {stored.name!r}: no token_url is known")
        where = f"token endpoint of credential {stored.name!r}"
        rotating = scheme is Scheme.OAUTH2_AUTHORIZATION_CODE
        if rotating:
            if "refresh_token" not in stored.secrets:
                raise await self._needs_reauth(stored, "it holds no refresh token")
            if (
                stored.refresh_started_at is not None
                and stored.meta.get("refresh_token_reuse") != "allowed"
            ):
                raise await self._needs_reauth(
                    stored, "a refresh was interrupted after its refresh token may have "
                    "been sent; sending it again could revoke the whole grant",
                )  # fmt: skip
            # 1. durably: "a refresh token is about to be sent"
            stored = await self.vault.update(stored, refresh_started_at=self._clock.now())
            failpoints.reach("vault.refresh.marked")
        wanted = ("client_id", "client_secret", "refresh_token")
        opened = await self.vault.open(
            stored.tenant, stored.name, actor=actor, purpose="refresh", fields=wanted
        )
        if rotating:
            grant = {"grant_type": "refresh_token",
                     "refresh_token": opened.field("refresh_token").reveal()}  # fmt: skip
        else:
            grant = {"grant_type": "client_credentials"}
            if scope := stored.meta.get("scope") or defaults.scope:
                grant["scope"] = scope
        request = token_request(
            grant, opened.field("client_id"), opened.fields.get("client_secret"),
            str(stored.meta.get("auth_method", "client_secret_basic")),
        )  # fmt: skip
        del opened, grant
        reusable = stored.meta.get("refresh_token_reuse") == "allowed"
        self.refreshes += 1
        started = self._clock.monotonic()
        try:
            reply = await endpoint.send(
                "POST", token_url, form=request.form, headers=request.headers
            )
        except RequestNotSent as refused:  # nothing reached the vendor: the token is intact
            await self._clear_marker(stored, rotating)
            raise self._cool(key, refused) from None
        except VendorUnavailable as lost:
            # No answer: the vendor may have acted on the request.
            if rotating and not reusable:
                raise await self._needs_reauth(
                    stored, "the answer to a refresh was lost; the vendor may have rotated "
                    "the refresh token, which must not be sent again",
                ) from None  # fmt: skip
            await self._clear_marker(stored, rotating)
            raise self._cool(key, lost) from None
        failpoints.reach("vault.refresh.answered")
        if rotating and reply.status == GATEWAY_TIMEOUT and not reusable:
            # A proxy gave up waiting: the vendor behind it may have rotated the token.
            raise await self._needs_reauth(
                stored, "a proxy answered 504 to a refresh; the vendor may have rotated the "
                "refresh token, which must not be sent again",
            )  # fmt: skip
        if not 200 <= reply.status < 300:
            failure = refusal(reply, where)
            if isinstance(failure, VendorAuthRefused):
                raise await self._needs_reauth(stored, f"the vendor refused it ({failure})")
            await self._clear_marker(stored, rotating)
            raise self._cool(key, failure)
        try:
            issued = read_tokens(reply, where)
        except VendorProtocolError as failure:
            if rotating:  # a 2xx may have rotated the token, and we could not read the new one
                raise await self._needs_reauth(stored, str(failure)) from None
            raise self._cool(key, failure) from None
        # 2. durably: the new tokens, before anyone uses the access token
        new_secrets = {"access_token": issued.access_token}
        if rotating and issued.refresh_token is not None:  # a client-credentials one is ignored
            new_secrets["refresh_token"] = issued.refresh_token
        expires_at = (
            None if issued.expires_in is None
            else self._clock.now() + timedelta(seconds=issued.expires_in)
        )  # fmt: skip
        stored = await self.vault.update(
            stored, secrets=new_secrets, expires_at=expires_at, refresh_started_at=None,
            status=CredentialStatus.ACTIVE, reason="",
        )  # fmt: skip
        failpoints.reach("vault.refresh.stored")
        self._cooling.pop(key, None)
        self._refused.pop(key, None)
        good_until = None
        if issued.expires_in is not None:
            # a lifetime shorter than the skew is still used for half of it rather than not at all
            good_until = started + max(issued.expires_in - self._skew, issued.expires_in / 2)
        self._held[key] = _Held(issued.access_token, stored.version, started, good_until)
        return issued.access_token

    async def _clear_marker(self, stored: StoredCredential, rotating: bool) -> None:
        if rotating:
            await self.vault.update(stored, refresh_started_at=None)

    async def _needs_reauth(self, stored: StoredCredential, why: str) -> CredentialNeedsReauth:
        event = self.vault.alert(
            stored, "credential_needs_reauth",
            f"credential {stored.name!r} needs to be connected again: {why}",
            f"run `{_fix(stored)}`, then resume its connections",
        )  # fmt: skip
        await self.vault.update(
            stored, status=CredentialStatus.NEEDS_REAUTH, reason=why, refresh_started_at=None,
            events=[event],
        )  # fmt: skip
        key = (stored.tenant, stored.name)
        self._held.pop(key, None)
        self._static.pop(key, None)
        return CredentialNeedsReauth(
            f"credential {stored.name!r} needs_reauth: {why}; run `{_fix(stored)}`"
        )

    def check_cooldown(self, tenant: str, name: str) -> None:
        """``VendorUnavailable`` while the credential's endpoint is cooling down after failing."""
        self._check_cooldown((tenant, name), name)

    def cool(self, tenant: str, name: str, failure: VendorError) -> VendorError:
        """Start or lengthen the cooldown of a credential's endpoint (a legacy login, say)."""
        return self._cool((tenant, name), failure)

    def _check_cooldown(self, key: tuple[str, str], name: str) -> None:
        until, _ = self._cooling.get(key, (0.0, 0))
        left = until - self._clock.monotonic()
        if left > 0:
            raise VendorUnavailable(
                f"credential {name!r}: its token endpoint failed; next try in {left:.0f} s", left
            )

    def _cool(self, key: tuple[str, str], failure: VendorError) -> VendorError:
        """Start (or lengthen) the cooldown after a failed token request."""
        _, failures = self._cooling.get(key, (0.0, 0))
        pause = min(self._cooldown_base * 2**failures, self._cooldown_max)
        if isinstance(failure, VendorUnavailable):
            pause = max(pause, failure.retry_after or 0.0)
            failure.retry_after = pause
        self._cooling[key] = (self._clock.monotonic() + pause, failures + 1)
        return failure

    # ------------------------------------------------------------------ static secrets

    async def secrets(self, tenant: str, name: str, *, actor: str) -> dict[str, Secret]:
        """An API key's or a password's fields, decrypted once and then held; re-checked against
        the stored version every ``recheck`` seconds."""
        key = (tenant, name)
        held = self._static.get(key)
        now = self._clock.monotonic()
        if held is not None and now - held.checked < self._recheck:
            return held.fields
        lock = self._local.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._static.get(key)
            if held is not None and self._clock.monotonic() - held.checked < self._recheck:
                return held.fields
            stored = await self.vault.stored(tenant, name)
            _usable(stored)
            if self._refused.get(key) == stored.version:
                # The vendor refused these very secrets and nobody has changed them: sending them
                # again would only add failed logins (vendors lock accounts after a few).
                raise await self._needs_reauth(stored, "the vendor refused it (401)")
            if held is not None and held.version == stored.version:
                held.checked = self._clock.monotonic()
                return held.fields
            opened = await self.vault.open(tenant, name, actor=actor, purpose="call")
            self._static[key] = _Static(opened.fields, stored.version, self._clock.monotonic())
            return opened.fields

    async def login_refused(self, tenant: str, name: str, why: str) -> CredentialNeedsReauth:
        """A vendor refused a legacy login's password: stop logging in (vendors lock accounts
        after a few failed logins) until a person fixes it, with one alert."""
        stored = await self.vault.stored(tenant, name)
        if stored.status is CredentialStatus.NEEDS_REAUTH:
            return CredentialNeedsReauth(f"credential {name!r} needs_reauth: {why}")
        return await self._needs_reauth(stored, why)

    def forget(self, tenant: str, name: str) -> None:
        """Drop what is held for a credential (it was edited here)."""
        key = (tenant, name)
        for held in (self._held, self._static, self._refused):
            held.pop(key, None)

    # ------------------------------------------------------------------ API-key rotation

    async def rotate_api_key(
        self, tenant: str, name: str, endpoint: TokenEndpoint, *, actor: str,
        if_version: int | None = None,
    ) -> StoredCredential:  # fmt: skip
        """Ask the vendor for a new key (``meta.rotate_url``) and store it, keeping the old one as
        ``previous_api_key`` until the vendor's overlap ends. Under the credential's lock; with
        ``if_version`` (what a scheduler saw when it found the key due), nothing is done if the
        credential changed since - another scheduler rotated it first."""
        async with self._locks.hold(
            f"credential:{tenant}:{name}", wait=self._lock_wait, lease=self._lock_lease
        ):
            stored = await self.vault.stored(tenant, name)
            if if_version is not None and stored.version != if_version:
                return stored
            _usable(stored)
            url = stored.meta.get("rotate_url")
            if stored.scheme != Scheme.API_KEY or not url:
                raise ConfigurationError(
                    f"credential {name!r} cannot be rotated: it is not an API key with a rotate_url"
                )
            opened = await self.vault.open(tenant, name, actor=actor, purpose="rotate",
                                           fields=("api_key",))  # fmt: skip
            old = opened.field("api_key")
            headers, target = {"Accept": "application/json"}, str(url)
            if query := stored.meta.get("query"):  # the key goes where the vendor reads it
                target += ("&" if "?" in target else "?") + urlencode({query: old.reveal()})
            else:
                headers[str(stored.meta.get("header") or "X-Api-Key")] = old.reveal()
            where = f"key-rotation endpoint of credential {name!r}"
            try:
                reply = await endpoint.send("POST", target, headers=headers)
            except RequestNotSent:
                raise
            except VendorUnavailable:
                await self._rotation_lost(stored)
                raise
            if not 200 <= reply.status < 300:
                raise refusal(reply, where)
            try:
                body = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                body = None
            new = body.get("key") if isinstance(body, dict) else None
            if not isinstance(new, str) or not new:
                await self._rotation_lost(stored)
                raise VendorProtocolError(f"{where}: answered without a key")
            SECRETS.add(new)
            until = body.get("previous_valid_until") if isinstance(body, dict) else None
            now = self._clock.now()
            event = _rotated(stored, now)
            stored = await self.vault.update(
                stored, secrets={"api_key": new, "previous_api_key": old},
                meta={"rotated_at": now.isoformat(),
                      "previous_valid_until": until if isinstance(until, str) else None},
                events=[event],
            )  # fmt: skip
        self.forget(tenant, name)
        return stored

    async def _rotation_lost(self, stored: StoredCredential) -> None:
        """The vendor may have rotated the key without our learning the new one: the old key
        works only until its overlap ends, so a person hears of it now."""
        event = self.vault.alert(
            stored, "credential_rotation_lost",
            f"the answer to rotating credential {stored.name!r} was lost; the vendor may have "
            "issued a new key, and the current one stops working when its overlap ends",
            f"fetch the new key from the vendor and run `cadastre credentials add {stored.name} "
            f"-t {stored.tenant} --replace ...`, or rotate it again",
        )  # fmt: skip
        await self.vault.update(stored, events=[event])

    async def due_for_rotation(self, tenant: str) -> list[StoredCredential]:
        now = self._clock.now()
        due = []
        for stored in await self.vault.all(tenant):
            every = stored.meta.get("rotate_every_days")
            if stored.scheme != Scheme.API_KEY or not every or not stored.meta.get("rotate_url"):
                continue
            if stored.status is not CredentialStatus.ACTIVE:
                continue
            last = stored.meta.get("rotated_at")
            since = _parse_time(last) if isinstance(last, str) else stored.updated_at
            if since is None or now - since >= timedelta(days=float(every)):
                due.append(stored)
        return due

    # ------------------------------------------------------------------ authorization code

    async def start_consent(
        self, tenant: str, name: str, *, redirect_uri: str, authorize_url: str | None = None,
        scope: str | None = None,
    ) -> str:  # fmt: skip
        """The consent URL for a person to open (RFC 6749 4.1.1 with PKCE S256). The state names
        tenant and credential and carries 32 random bytes, whose hash the row keeps."""
        stored = await self.vault.stored(tenant, name)
        if stored.scheme != Scheme.OAUTH2_AUTHORIZATION_CODE:
            raise ConfigurationError(f"credential {name!r} is not an authorization-code credential")
        url = authorize_url or stored.meta.get("authorize_url")
        if not url:
            raise ConfigurationError(f"credential {name!r}: no authorize_url is known")
        opened = await self.vault.open(tenant, name, actor="connect", purpose="connect",
                                       fields=("client_id",))  # fmt: skip
        verifier, challenge = pkce_pair()
        state = encode_state(tenant, name)
        await self.vault.update(
            stored, secrets={"code_verifier": verifier},
            meta={"pending_state": _digest(state), "pending_since": self._clock.now().isoformat(),
                  "redirect_uri": redirect_uri},
            status=CredentialStatus.PENDING if "refresh_token" not in stored.secrets else None,
        )  # fmt: skip
        query = {
            "response_type": "code", "client_id": opened.field("client_id").reveal(),
            "redirect_uri": redirect_uri, "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }  # fmt: skip
        if scope := scope or stored.meta.get("scope"):
            query["scope"] = scope
        return f"{url}{'&' if '?' in str(url) else '?'}{urlencode(query)}"

    async def consent_in_progress(self, state: str) -> StoredCredential:
        """The credential whose consent ``state`` names, if that consent is in progress and not
        too old; ``CredentialError`` otherwise. Uses nothing up: the callback checks a state
        before it opens any gateway for it."""
        try:
            stored = await self.vault.stored(*decode_state(state))
        except CredentialError:  # the same answer whether or not such a credential exists
            raise CredentialError("the consent state is unknown or was already used") from None
        pending, since = stored.meta.get("pending_state"), stored.meta.get("pending_since")
        if not (isinstance(pending, str) and secrets.compare_digest(pending, _digest(state))):
            raise CredentialError("the consent state is unknown or was already used")
        started = _parse_time(since) if isinstance(since, str) else None
        if started is None or (self._clock.now() - started).total_seconds() > CONSENT_SECONDS:
            raise CredentialError(
                "the consent took too long; run `cadastre credentials connect` again"
            )
        return stored

    async def complete_consent(
        self, state: str, code: str, endpoint: TokenEndpoint,
        defaults: Defaults = Defaults(),
    ) -> StoredCredential:  # fmt: skip
        """Exchange the code the callback received for tokens (RFC 6749 4.1.3 + PKCE)."""
        stored = await self.consent_in_progress(state)
        tenant, name = stored.tenant, stored.name
        token_url = stored.meta.get("token_url") or defaults.token_url
        if not token_url:
            raise ConfigurationError(f"credential {name!r}: no token_url is known")
        opened = await self.vault.open(
            tenant, name, actor="connect", purpose="connect",
            fields=("client_id", "client_secret", "code_verifier"),
        )  # fmt: skip
        grant = {"grant_type": "authorization_code", "code": code,
                 "redirect_uri": str(stored.meta.get("redirect_uri") or ""),
                 "code_verifier": opened.field("code_verifier").reveal()}  # fmt: skip
        request = token_request(
            grant, opened.field("client_id"), opened.fields.get("client_secret"),
            str(stored.meta.get("auth_method", "client_secret_basic")),
        )  # fmt: skip
        # the state is spent whatever the answer: a code is single-use
        stored = await self.vault.update(
            stored, drop=("code_verifier",), meta={"pending_state": None, "pending_since": None}
        )
        reply = await endpoint.send("POST", token_url, form=request.form, headers=request.headers)
        where = f"token endpoint of credential {name!r}"
        if not 200 <= reply.status < 300:
            raise refusal(reply, where)
        issued = read_tokens(reply, where)
        if issued.refresh_token is None:
            raise VendorProtocolError(f"{where}: the code exchange returned no refresh_token")
        expires_at = (
            None if issued.expires_in is None
            else self._clock.now() + timedelta(seconds=issued.expires_in)
        )  # fmt: skip
        for _ in range(3):  # the code is spent: a concurrent write must not lose its tokens
            try:
                stored = await self.vault.update(
                    stored, secrets={"access_token": issued.access_token,
                                     "refresh_token": issued.refresh_token},
                    expires_at=expires_at, refresh_started_at=None,
                    status=CredentialStatus.ACTIVE, reason="",
                )  # fmt: skip
                break
            except ConcurrentUpdate:
                stored = await self.vault.stored(tenant, name)
        else:
            raise ConcurrentUpdate(f"credential {name!r} kept changing; connect it again")
        self.forget(tenant, name)
        return stored


def _fix(stored: StoredCredential) -> str:
    """The command that mends a credential a vendor refused."""
    if stored.scheme == Scheme.OAUTH2_AUTHORIZATION_CODE:
        return f"cadastre credentials connect {stored.name} -t {stored.tenant}"
    return f"cadastre credentials add {stored.name} -t {stored.tenant} --replace ..."


def _usable(stored: StoredCredential) -> None:
    if stored.status is CredentialStatus.NEEDS_REAUTH:
        raise CredentialNeedsReauth(
            f"credential {stored.name!r} needs_reauth ({stored.status_reason}); run "
            f"`{_fix(stored)}`"
        )
    if stored.status is CredentialStatus.PENDING:
        raise CredentialError(
            f"credential {stored.name!r} is waiting for consent; finish "
            f"`cadastre credentials connect {stored.name}`"
        )
    if stored.status is CredentialStatus.DISABLED:
        raise CredentialError(f"credential {stored.name!r} is disabled")


def _rotated(stored: StoredCredential, now: datetime) -> EventEnvelope:
    return EventEnvelope(
        source="/cadastre/vault", type="cadastre.credential.rotated.v1", subject=stored.name,
        time=now, tenant=stored.tenant, data={"credential": stored.name},
    )  # fmt: skip


def encode_state(tenant: str, name: str) -> str:
    head = base64.urlsafe_b64encode(orjson.dumps([tenant, name])).rstrip(b"=").decode()
    return f"{head}.{secrets.token_urlsafe(32)}"


def decode_state(state: str) -> tuple[str, str]:
    head, _, nonce = state.partition(".")
    try:
        padded = head + "=" * (-len(head) % 4)
        tenant, name = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise CredentialError("the consent state is not one this hub issued") from None
    if not (isinstance(tenant, str) and isinstance(name, str) and nonce):
        raise CredentialError("the consent state is not one this hub issued")
    return tenant, name


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
