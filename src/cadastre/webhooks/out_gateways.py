"""The gateways deliveries leave through: one per subscription (its own connection pool, kept
across deliveries), built as ``Hub.token_endpoint`` builds the gateway of a credential that no
connection uses: a vendor policy of its own and the operator's address rules, and no guards.

Deliveries are sent through the gateway's no-retry path (``Gateway.token_endpoint``: metering
and the address guard, one request, the answer returned whatever its status): the retry schedule
is the delivery's own, kept in the store. No redirect is ever followed, and the address guard
judges the address actually dialled, so a subscription's host that resolves to a private or
metadata address at send time (DNS rebinding) is refused then, whatever it resolved to when the
subscription was created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadastre.gateway import AddressAllowList, Gateway, VendorPolicy, origin
from cadastre.gateway.address import guarded_transport

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from cadastre.gateway.address import Resolver
    from cadastre.observe import Metrics
    from cadastre.ports import Clock, Subscription


class SubscriberGateways:
    def __init__(
        self,
        clock: Clock,
        *,
        allow_hosts: Sequence[str] = (),
        timeout: float = 15.0,
        metrics: Metrics | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """``timeout``: seconds an attempt may wait to connect and between bytes of the answer.
        ``resolver`` replaces the system's in the address guard (tests of DNS rebinding)."""
        self._clock = clock
        self._allow_hosts = tuple(allow_hosts)
        self._allow = AddressAllowList.parse(allow_hosts)
        self.timeout = timeout
        self._metrics = metrics
        self._resolver = resolver
        self._open: dict[tuple[str, str, str], Gateway] = {}  # (tenant, subscription, url)

    def get(self, tenant: str, subscription: Subscription) -> Gateway:
        key = (tenant, subscription.id, subscription.url)
        gateway = self._open.get(key)
        if gateway is None:
            url = subscription.url
            policy = VendorPolicy(
                vendor=f"subscriber@{origin(url)}", connect=self.timeout, read=self.timeout,
                total=self.timeout, max_attempts=1,
            )  # fmt: skip
            transport = (
                guarded_transport(allow=self._allow, resolver=self._resolver)
                if self._resolver is not None else None
            )  # fmt: skip
            gateway = Gateway(
                url, policy, clock=self._clock, metrics=self._metrics,
                connection=f"subscription:{subscription.id}", transport=transport,
                allow_hosts=self._allow_hosts,
            )  # fmt: skip
            self._open[key] = gateway
        return gateway

    async def keep(self, tenant: str, subscriptions: Iterable[Subscription]) -> None:
        """Close the tenant's gateways of subscriptions that are gone or point elsewhere now
        (``subscriptions`` are the tenant's now). The sender calls it after each claim; an
        attempt still in flight through a gateway closed here fails, which changes nothing: its
        subscription's removal cancelled the delivery and released the claim."""
        live = {(tenant, s.id, s.url) for s in subscriptions}
        for key in [k for k in self._open if k[0] == tenant and k not in live]:
            await self._open.pop(key).aclose()

    async def aclose(self) -> None:
        for gateway in self._open.values():
            await gateway.aclose()
        self._open.clear()
