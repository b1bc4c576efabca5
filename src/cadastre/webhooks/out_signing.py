"""The keys that sign a subscription's deliveries, held decrypted in memory.

Every ``vault.open`` decrypts and records a read, so the sender does not open the vault per
delivery: it asks the row's version (``vault.stored``, no decryption) and opens the credential
again only when the version moved (a rotation, from this process or another). This is the one
place outside the vault that holds a secret longer than a call, as the vault's ``TokenManager``
holds access tokens; the keys are never logged and never leave this module but as signatures.

During a rotation's overlap (``previous_valid_until`` in the credential's meta) deliveries carry
two signatures, the new secret's first, so a subscriber can switch secrets at its own pace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cadastre.errors import CredentialError
from cadastre.ports import Clock
from cadastre.vault import Vault
from cadastre.webhooks.standard import secret_key

if TYPE_CHECKING:
    from collections.abc import Collection

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class _Held:
    version: int
    current: bytes
    previous: bytes | None
    previous_until: datetime | None

    def __repr__(self) -> str:
        return f"_Held(version={self.version})"


@dataclass
class SigningKeys:
    vault: Vault
    clock: Clock
    actor: str = "webhooks-out"
    _held: dict[tuple[str, str], _Held] = field(default_factory=dict, repr=False)
    _opening: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict, repr=False)

    async def keys(self, tenant: str, credential: str) -> list[bytes]:
        """The keys to sign with now: the current secret's, then the previous one's while its
        overlap lasts."""
        stored = await self.vault.stored(tenant, credential)
        key = (tenant, credential)
        held = self._held.get(key)
        if held is None or held.version != stored.version:
            # One decryption per version, however many deliveries ask at once.
            async with self._opening.setdefault(key, asyncio.Lock()):
                held = self._held.get(key)
                if held is None or held.version != stored.version:
                    held = await self._open(tenant, credential)
                    self._held[key] = held
        keys = [held.current]
        until = held.previous_until
        if held.previous is not None and until is not None and self.clock.now() < until:
            keys.append(held.previous)
        return keys

    def forget(self, tenant: str, credential: str) -> None:
        self._held.pop((tenant, credential), None)

    def keep(self, tenant: str, credentials: Collection[str]) -> None:
        """Drop the tenant's keys but those of ``credentials`` (its subscriptions' now), so a
        removed subscription's secret does not stay decrypted in memory."""
        for key in [k for k in self._held if k[0] == tenant and k[1] not in credentials]:
            del self._held[key]
            self._opening.pop(key, None)

    def held(self) -> set[tuple[str, str]]:
        """(tenant, credential) of the keys held now."""
        return set(self._held)

    async def _open(self, tenant: str, credential: str) -> _Held:
        opened = await self.vault.open(tenant, credential, actor=self.actor, purpose="sign")
        try:
            current = secret_key(opened.field("secret").reveal())
            previous = opened.fields.get("previous_secret")
            old = secret_key(previous.reveal()) if previous is not None else None
        except ValueError:
            raise CredentialError(
                f"credential {credential!r} does not hold a Standard Webhooks secret (whsec_...)"
            ) from None
        return _Held(
            opened.stored.version, current, old,
            _overlap_end(opened.stored.meta.get("previous_valid_until"), credential),
        )  # fmt: skip


def _overlap_end(value: object, credential: str) -> datetime | None:
    """The end of a rotation's overlap. The vault keeps it as free text (an operator may set it
    by hand): one without a zone is UTC; one that is not a time ends the overlap, rather than
    failing every delivery of the subscription."""
    if not isinstance(value, str):
        return None
    try:
        until = datetime.fromisoformat(value)
    except ValueError:
        log.warning("credential %r: previous_valid_until is not an ISO 8601 time; only the "
                    "current secret signs", credential)  # fmt: skip
        return None
    return until if until.tzinfo is not None else until.replace(tzinfo=UTC)
