"""The vendor call chain as httpx transports: retry -> [breaker, bulkhead, rate limit: next] ->
auth -> metering -> HTTP. Connectors call vendors through a ``Gateway``; see docs/gateway.md."""

from cadastre.gateway.auth import Authenticator, OAuth2ClientCredentials
from cadastre.gateway.client import Gateway
from cadastre.gateway.outcome import Classification, Outcome, classify
from cadastre.gateway.policy import VendorPolicy

__all__ = [
    "Authenticator",
    "Classification",
    "Gateway",
    "OAuth2ClientCredentials",
    "Outcome",
    "VendorPolicy",
    "classify",
]
