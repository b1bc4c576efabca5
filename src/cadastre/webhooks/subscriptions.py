"""``SubscriptionService``: a tenant's webhook subscriptions, created, listed, rotated, enabled and
removed through the API and the CLI.

The signing secret of a subscription is a vault credential (scheme ``webhook_secret``, named
``subscription-<id>``). It is returned once, by ``add`` and by ``rotate_secret``, and never
again: listings and errors name the credential, not its value. A rotation keeps the old secret
as ``previous_secret`` until ``previous_valid_until`` (24 hours by default), and deliveries carry
both signatures meanwhile. Every change is written to the audit log with the subscription.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cadastre.errors import ConfigurationError, NotFound
from cadastre.gateway import AddressAllowList
from cadastre.observe import SECRETS
from cadastre.ports import Secret, Subscription, SubscriptionFormat, SubscriptionStatus
from cadastre.webhooks.out_events import check_event_types
from cadastre.webhooks.out_urls import check_url
from cadastre.webhooks.slack import check_slack_types
from cadastre.webhooks.standard import new_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from cadastre.gateway.address import Resolver
    from cadastre.ports import Clock, Store, UnitOfWork
    from cadastre.vault import Vault

SCHEME = "webhook_secret"
ROTATION_OVERLAP = timedelta(hours=24)
MAX_DESCRIPTION = 500


def credential_name(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


@dataclass(frozen=True)
class Created:
    subscription: Subscription
    secret: Secret  # shown once


@dataclass(frozen=True)
class Rotated:
    subscription: Subscription
    secret: Secret  # shown once
    previous_valid_until: datetime


class SubscriptionService:
    def __init__(
        self,
        store: Store,
        vault: Vault,
        clock: Clock,
        *,
        allow_hosts: Sequence[str] = (),
        resolver: Resolver | None = None,
        resumed: Callable[[str], None] | None = None,
    ) -> None:
        """``allow_hosts``: the operator's ``CADASTRE_GATEWAY_ALLOW_HOSTS``. ``resolver`` judges
        a URL's host name at creation (tests pass one). ``resumed`` hears of a tenant whose
        waiting deliveries became due (an enabled subscription): the sender's nudge."""
        self._store = store
        self._vault = vault
        self._clock = clock
        self._allow = AddressAllowList.parse(allow_hosts)
        self._resolver = resolver
        self._resumed = resumed

    async def add(
        self, tenant: str, *, url: str, event_types: Sequence[str], description: str = "",
        actor: str = "api", format: SubscriptionFormat | str = SubscriptionFormat.STANDARD,
    ) -> Created:  # fmt: skip
        if await self._store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")
        try:
            body_format = SubscriptionFormat(format)
        except ValueError:
            raise ConfigurationError(
                f"format {format!r} is not one of {', '.join(SubscriptionFormat)}"
            ) from None
        types = check_event_types(event_types)
        if body_format is SubscriptionFormat.SLACK:
            check_slack_types(types)
        checked = await check_url(url, self._allow, resolver=self._resolver)
        if len(description) > MAX_DESCRIPTION:
            raise ConfigurationError(f"a description is at most {MAX_DESCRIPTION} characters")
        id = f"sub_{secrets.token_hex(8)}"
        now = self._clock.now()
        subscription = Subscription(
            id=id, url=checked, event_types=types, description=description,
            status=SubscriptionStatus.ACTIVE, status_reason="", failing_since=None,
            credential=credential_name(id), created_at=now, updated_at=now, format=body_format,
        )  # fmt: skip
        secret = _fresh_secret()
        await self._vault.add(tenant, subscription.credential, SCHEME, {"secret": secret})
        try:
            async with self._store.unit_of_work(tenant) as uow:
                await uow.subscriptions.add(subscription)
                await self._audit(uow, actor, "subscription.created", subscription,
                                  url=subscription.url, event_types=list(types),
                                  format=body_format.value)  # fmt: skip
                await uow.commit()
        except BaseException:
            await self._vault.delete(tenant, subscription.credential)  # no orphan secret
            raise
        return Created(subscription, secret)

    async def all(self, tenant: str) -> list[Subscription]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.subscriptions.all()

    async def get(self, tenant: str, id: str) -> Subscription:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.subscriptions.get(id)
        if found is None:
            raise NotFound(f"subscription {id!r} does not exist")
        return found

    async def remove(self, tenant: str, id: str, *, actor: str = "api") -> int:
        """Remove the subscription and its secret; its waiting deliveries are cancelled (how
        many), the others kept as its history."""
        async with self._store.unit_of_work(tenant) as uow:
            found = await uow.subscriptions.get(id)
            if found is None:
                raise NotFound(f"subscription {id!r} does not exist")
            cancelled = await uow.deliveries.cancel(id)
            await uow.subscriptions.delete(id)
            await self._audit(uow, actor, "subscription.removed", found, cancelled=cancelled)
            await uow.commit()
        with contextlib.suppress(NotFound):  # removed by hand already: gone either way
            await self._vault.delete(tenant, found.credential)
        return cancelled

    async def rotate_secret(
        self, tenant: str, id: str, *, overlap: timedelta = ROTATION_OVERLAP,
        actor: str = "api",
    ) -> Rotated:  # fmt: skip
        """A new signing secret; the current one keeps signing too until ``overlap`` has
        passed, so the subscriber can move to the new one without a refused delivery."""
        if overlap < timedelta(0):
            raise ConfigurationError("the overlap of a rotation cannot be negative")
        subscription = await self.get(tenant, id)
        stored = await self._vault.stored(tenant, subscription.credential)
        opened = await self._vault.open(
            tenant, subscription.credential, actor=actor, purpose="rotate", fields=["secret"]
        )
        now = self._clock.now()
        until = now + overlap
        secret = _fresh_secret()
        # version-checked: two rotations at once cannot both keep "the previous" secret
        await self._vault.update(
            stored, secrets={"secret": secret, "previous_secret": opened.field("secret")},
            meta={"previous_valid_until": until.isoformat(), "rotated_at": now.isoformat()},
        )  # fmt: skip
        async with self._store.unit_of_work(tenant) as uow:
            await self._audit(uow, actor, "subscription.secret_rotated", subscription,
                              previous_valid_until=until.isoformat())  # fmt: skip
            await uow.commit()
        return Rotated(subscription, secret, until)

    async def enable(self, tenant: str, id: str, *, actor: str = "api") -> Subscription:
        """Active again: the failure clock starts over and its waiting deliveries are due now."""
        async with self._store.unit_of_work(tenant) as uow:
            changed = await uow.subscriptions.set_status(id, SubscriptionStatus.ACTIVE)
            if changed is None:
                found = await uow.subscriptions.get(id)
                if found is None:
                    raise NotFound(f"subscription {id!r} does not exist")
                return found  # active already
            resumed = await uow.deliveries.resume(id)
            await self._audit(uow, actor, "subscription.enabled", changed, resumed=resumed)
            await uow.commit()
        if self._resumed is not None:
            self._resumed(tenant)
        return changed

    async def _audit(
        self, uow: UnitOfWork, actor: str, action: str, subscription: Subscription,
        **detail: object,
    ) -> None:  # fmt: skip
        await uow.audit.append(
            actor=actor, action=action, entity="Subscription", entity_id=subscription.id,
            detail=detail,
        )  # fmt: skip


def _fresh_secret() -> Secret:
    value = new_secret()
    SECRETS.add(value)  # scrubbed from any log line it might reach
    return Secret(value)
