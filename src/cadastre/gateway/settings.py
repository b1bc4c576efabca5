"""What a connection's config may say about its gateway (``config.gateway``), checked on load.

```yaml
gateway:
  vendor: bridge-mls            # bulkhead and metrics identity; default: connector vendor @ host
  quota: bridge-client-4711     # bucket shared by every connection spending this vendor quota
  rate_limit: {requests: 100, per: 60, burst: 10, headroom: 0.1}   # the vendor's documented limit
  connection_rate_limit: {requests: 20, per: 1}                     # this connection's own share
  breaker: {failure_rate_threshold: 0.5, minimum_calls: 20, open_duration: 30}
  bulkhead: {max_concurrent: 16, max_wait: 10}
  allow_hosts: ["127.0.0.0/8"]  # private addresses this connection may reach (simulators, tests)
```
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cadastre.errors import ConfigurationError
from cadastre.gateway.address import AddressAllowList
from cadastre.gateway.breaker import BreakerPolicy
from cadastre.gateway.ratelimit import RateRule


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=2, description="requests the vendor allows per window")
    per: float = Field(default=1.0, gt=0, description="the window, seconds")
    burst: int | None = Field(default=None, ge=1)
    headroom: float = Field(default=0.1, ge=0, lt=1)

    def rule(self) -> RateRule:
        return RateRule(self.requests, self.per, self.burst, self.headroom)


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float = 10.0
    window: Literal["count", "time"] = "count"
    window_size: int = 50
    minimum_calls: int = 20
    open_duration: float = 30.0
    half_open_probes: int = 3
    max_half_open_wait: float = 60.0

    def policy(self) -> BreakerPolicy:
        return BreakerPolicy(**self.model_dump())

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        # BreakerPolicy names every problem; checked here so they surface with the connection's
        # other settings, where the connection is named.
        try:
            self.policy()
        except ConfigurationError as error:
            raise ValueError(str(error).removeprefix("breaker policy: ")) from None
        return self


class BulkheadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent: int = Field(default=16, ge=1, description="calls in flight to this vendor")
    max_wait: float = Field(default=10.0, ge=0, description="seconds a call may queue for a slot")


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")
    quota: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
    rate_limit: RateLimitSettings | None = None
    connection_rate_limit: RateLimitSettings | None = None
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    bulkhead: BulkheadSettings = Field(default_factory=BulkheadSettings)
    allow_hosts: tuple[str, ...] = ()

    @field_validator("allow_hosts")
    @classmethod
    def _readable(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        try:
            AddressAllowList.parse(entries)
        except ConfigurationError as error:
            raise ValueError(str(error).removeprefix("address allow-list: ")) from None
        return entries
