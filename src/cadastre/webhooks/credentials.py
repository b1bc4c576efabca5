"""The secrets that verify a connection's webhooks, held in memory by credential and version.

Every ``vault.open`` decrypts and writes a credential-read record, which a webhook endpoint taking
a thousand requests a second must not do per request. So the decrypted secrets are held by
(tenant, credential) with the version they came from, the way ``TokenManager`` holds tokens; the
credential's version (its clear row, no decryption) is looked at again every ``recheck``
seconds, and at once when a signature fails to verify, so a rotated secret is picked up as soon
as the vendor signs with it (at most once every ``fresh_after`` seconds: a flood of forged
requests must not become a database read each). Concurrent requests that find the entry due
share one look-up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cadastre.errors import CadastreError, WebhookRefused
from cadastre.ports import CredentialStatus, Secret

if TYPE_CHECKING:
    from cadastre.ports import Clock
    from cadastre.vault import Vault

SCHEME = "webhook_secret"
ACTOR = "webhooks-in"


@dataclass(frozen=True)
class SigningSecrets:
    version: int
    current: Secret
    previous: Secret | None = None
    previous_until: datetime | None = None  # None: the previous secret verifies until removed

    def usable(self, now: datetime) -> list[Secret]:
        """The secrets that verify now: the current one, and the previous one while a rotation
        overlaps."""
        if self.previous is None or (self.previous_until and now >= self.previous_until):
            return [self.current]
        return [self.current, self.previous]


@dataclass
class _Held:
    secrets: SigningSecrets
    checked: float  # clock.monotonic() of the last version check
    fresh: float | None = None  # ... of the last one asked for by a failed signature


class WebhookCredentials:
    def __init__(
        self, vault: Vault, clock: Clock, *, recheck: float = 5.0, fresh_after: float = 1.0
    ) -> None:
        self._vault = vault
        self._clock = clock
        self._recheck = recheck
        self._fresh_after = fresh_after
        self._held: dict[tuple[str, str], _Held] = {}
        self._looking: dict[tuple[str, str], asyncio.Future[SigningSecrets]] = {}
        self.opened = 0  # decryptions made (tests read it)

    def __repr__(self) -> str:
        return f"WebhookCredentials(held={len(self._held)})"

    def held(self, tenant: str, name: str) -> SigningSecrets | None:
        """The credential's secrets when its version was looked at less than ``recheck``
        seconds ago (most requests: no coroutine), else None: ``get`` looks."""
        held = self._held.get((tenant, name))
        if held is None or self._clock.monotonic() - held.checked >= self._recheck:
            return None
        return held.secrets

    async def get(self, tenant: str, name: str, *, fresh: bool = False) -> SigningSecrets:
        """The credential's secrets; ``fresh`` looks at its version again unless that was done
        in the last ``fresh_after`` seconds. ``WebhookRefused`` (503) when it cannot be used."""
        key = (tenant, name)
        held = self._held.get(key)
        now = self._clock.monotonic()
        if held is not None:
            if fresh and held.fresh is not None and now - held.fresh < self._fresh_after:
                return held.secrets  # a flood of forged requests costs one look-up a second
            if not fresh and now - held.checked < self._recheck:
                return held.secrets
            if fresh:
                held.fresh = now
        looking = self._looking.get(key)
        if looking is not None:
            return await asyncio.shield(looking)
        future: asyncio.Future[SigningSecrets] = asyncio.get_running_loop().create_future()
        self._looking[key] = future
        try:
            found = await self._look(tenant, name, held)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._looking[key]
        future.set_result(found)
        return found

    def forget(self, tenant: str, name: str) -> None:
        self._held.pop((tenant, name), None)

    async def _look(self, tenant: str, name: str, held: _Held | None) -> SigningSecrets:
        try:
            stored = await self._vault.stored(tenant, name)
        except CadastreError as exc:
            self.forget(tenant, name)
            raise _unusable(name, str(exc)) from None
        if stored.scheme != SCHEME:
            raise _unusable(name, f"its scheme is {stored.scheme}, not {SCHEME}")
        if stored.status is not CredentialStatus.ACTIVE:
            raise _unusable(name, f"it is {stored.status.value}")
        checked = self._clock.monotonic()
        if held is not None and held.secrets.version == stored.version:
            held.checked = checked
            return held.secrets
        opened = await self._vault.open(tenant, name, actor=ACTOR, purpose="verify")
        self.opened += 1
        until = opened.stored.meta.get("previous_valid_until")
        secrets = SigningSecrets(
            opened.stored.version, opened.field("secret"), opened.fields.get("previous_secret"),
            None if until is None else _instant(until),
        )  # fmt: skip
        self._held[(tenant, name)] = _Held(secrets, checked)
        return secrets


def _instant(value: object) -> datetime:
    """An end of overlap as written in the credential's meta; one that cannot be read has
    passed (the previous secret stops verifying rather than verifying for ever)."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return _PASSED
    return moment if moment.tzinfo is not None else _PASSED


_PASSED = datetime.min.replace(tzinfo=UTC)


def _unusable(name: str, why: str) -> WebhookRefused:
    return WebhookRefused(
        "not_configured", f"webhook credential {name!r} cannot be used: {why}", status=503
    )
