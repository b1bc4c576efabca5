"""The vendor call chain as httpx transports: retry -> breaker -> bulkhead -> auth -> rate limit ->
metering -> HTTP. Connectors call vendors through a ``Gateway``; see docs/gateway.md."""

from cadastre.gateway.address import AddressAllowList
from cadastre.gateway.auth import Authenticator, GatewayTokenEndpoint, VaultAuth
from cadastre.gateway.breaker import BreakerPolicy, BreakerSnapshot, BreakerState
from cadastre.gateway.client import Gateway, origin
from cadastre.gateway.controls import GatewayControls, Guards
from cadastre.gateway.outcome import Classification, Outcome, classify
from cadastre.gateway.policy import VendorPolicy
from cadastre.gateway.ratelimit import MemoryRateLimitBackend, RateRule
from cadastre.gateway.ratelimit_redis import FailSafeRateLimitBackend, RedisRateLimitBackend
from cadastre.gateway.records import CallRecord
from cadastre.gateway.settings import GatewaySettings
from cadastre.gateway.translate import SchemaTranslator

__all__ = [
    "AddressAllowList",
    "Authenticator",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "CallRecord",
    "Classification",
    "FailSafeRateLimitBackend",
    "Gateway",
    "GatewayControls",
    "GatewaySettings",
    "GatewayTokenEndpoint",
    "Guards",
    "MemoryRateLimitBackend",
    "Outcome",
    "RateRule",
    "RedisRateLimitBackend",
    "SchemaTranslator",
    "VaultAuth",
    "VendorPolicy",
    "classify",
    "origin",
]
