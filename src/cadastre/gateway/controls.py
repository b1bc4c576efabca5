"""The state every gateway of one hub shares: bulkheads per vendor, breakers and retry budgets per
(tenant, connection), rate buckets in one backend, and the log of calls.

A gateway is built per connection, but a vendor's quota and its capacity for concurrent calls are
not per connection: two connections to the same MLS spend one quota and queue at one bulkhead.
``GatewayControls.guards`` hands each new gateway the shared pieces it must use.

Keys (RELIABILITY.md #21): breakers and retry budgets are per tenant and connection, so one
tenant's failing credentials cannot open another's breaker. Bulkheads are per vendor, because
they protect Cadastre's workers and connections, not a tenant's data. A credential's bucket is
shared by whoever spends that vendor quota (``quota`` in the connection's settings, else the
vendor and credential reference); a connection's own bucket is per tenant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cadastre.gateway.breaker import BreakerState, CircuitBreaker
from cadastre.gateway.bulkhead import Bulkhead
from cadastre.gateway.ratelimit import MemoryRateLimitBackend, RateLimiter, RateRule
from cadastre.gateway.records import CallLog
from cadastre.gateway.retry import RetryBudget

if TYPE_CHECKING:
    from cadastre.gateway.breaker import BreakerPolicy, BreakerSnapshot
    from cadastre.gateway.settings import BulkheadSettings, GatewaySettings
    from cadastre.observe import Metrics
    from cadastre.ports import Clock, RateLimitBackend

# A connection that declares no limit still gets a quota bucket, paced far above any vendor API
# (675 calls/s), so that the vendor's own 429s and RateLimit headers have a bucket to slow down.
LEARNING = RateRule(requests=1000, per=1.0)

_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class Guards:
    """What one gateway sends its calls through, besides auth and HTTP."""

    tenant: str = ""
    breaker: CircuitBreaker | None = None
    bulkhead: Bulkhead | None = None
    limiters: tuple[RateLimiter, ...] = ()
    vendor_limiter: RateLimiter | None = None  # the quota bucket, which learns from answers
    budget: RetryBudget | None = None
    calls: CallLog | None = None


class GatewayControls:
    def __init__(
        self,
        clock: Clock,
        *,
        backend: RateLimitBackend | None = None,
        metrics: Metrics | None = None,
        log_size: int = 10_000,
    ) -> None:
        self._clock = clock
        self.backend: RateLimitBackend = backend or MemoryRateLimitBackend(clock)
        self._metrics = metrics
        self.calls = CallLog(log_size)
        self._bulkheads: dict[str, Bulkhead] = {}
        self._breakers: dict[tuple[str, str], tuple[BreakerPolicy, CircuitBreaker]] = {}
        self._budgets: dict[tuple[str, str], RetryBudget] = {}
        self._limiters: dict[tuple[str, RateRule], RateLimiter] = {}

    def guards(
        self,
        *,
        tenant: str,
        connection: str,
        vendor: str,
        settings: GatewaySettings,
        credential: str | None,
        default_rate: RateRule | None = None,
    ) -> Guards:
        limiters: list[RateLimiter] = []
        if settings.connection_rate_limit is not None:
            limiters.append(
                self.limiter(f"conn:{tenant}:{connection}", settings.connection_rate_limit.rule())
            )
        rule = settings.rate_limit.rule() if settings.rate_limit is not None else default_rate
        quota = settings.quota or _quota_key(vendor, credential, tenant, connection)
        vendor_limiter = self.limiter(f"quota:{quota}", rule or LEARNING)
        limiters.append(vendor_limiter)  # last: the shared slot is the one sent at once
        return Guards(
            tenant=tenant,
            breaker=self.breaker(tenant, connection, vendor, settings.breaker.policy()),
            bulkhead=self.bulkhead(vendor, settings.bulkhead),
            limiters=tuple(limiters),
            vendor_limiter=vendor_limiter,
            budget=self.budget(tenant, connection),
            calls=self.calls,
        )

    def bulkhead(self, vendor: str, settings: BulkheadSettings) -> Bulkhead:
        bulkhead = self._bulkheads.get(vendor)
        if bulkhead is None or (bulkhead.max_concurrent, bulkhead.max_wait) != (
            settings.max_concurrent, settings.max_wait,
        ):  # fmt: skip
            # A changed cap takes effect for new calls; calls holding the old one finish there.
            bulkhead = Bulkhead(vendor, settings.max_concurrent, settings.max_wait, self._clock)
            self._bulkheads[vendor] = bulkhead
        return bulkhead

    def breaker(
        self, tenant: str, connection: str, vendor: str, policy: BreakerPolicy
    ) -> CircuitBreaker:
        held = self._breakers.get((tenant, connection))
        if held is not None and held[0] == policy:
            return held[1]  # the state survives a reopened gateway (an edited mapping, say)
        metrics = self._metrics
        gauge = metrics.gauge("cadastre_breaker_state") if metrics else None
        moves = metrics.counter("cadastre_breaker_transitions_total") if metrics else None

        def on_transition(old: BreakerState, new: BreakerState) -> None:
            if gauge is not None and moves is not None:
                gauge.labels(vendor, connection).set(_STATE_VALUE[new])
                moves.labels(vendor, connection, new.value).inc()

        breaker = CircuitBreaker(
            policy, self._clock, vendor=vendor, connection=connection, on_transition=on_transition
        )
        if gauge is not None:
            gauge.labels(vendor, connection).set(_STATE_VALUE[BreakerState.CLOSED])
        self._breakers[tenant, connection] = (policy, breaker)
        return breaker

    def budget(self, tenant: str, connection: str) -> RetryBudget:
        return self._budgets.setdefault((tenant, connection), RetryBudget())

    def limiter(self, key: str, rule: RateRule) -> RateLimiter:
        limiter = self._limiters.get((key, rule))
        if limiter is None:
            limiter = self._limiters[key, rule] = RateLimiter(key, rule, self.backend, self._clock)
        return limiter

    def breaker_states(self, tenant: str) -> dict[str, BreakerSnapshot]:
        """Connection name -> its breaker's state, for one tenant only."""
        return {
            connection: held[1].snapshot()
            for (owner, connection), held in sorted(self._breakers.items())
            if owner == tenant
        }

    async def aclose(self) -> None:
        await self.backend.aclose()


def _quota_key(vendor: str, credential: str | None, tenant: str, connection: str) -> str:
    # A credential reference names where a secret lives, not the secret; hashed all the same so
    # Redis keys and logs carry no tenant's naming.
    owner = credential or f"{tenant}/{connection}"
    return f"{vendor}:" + hashlib.sha256(owner.encode()).hexdigest()[:16]
