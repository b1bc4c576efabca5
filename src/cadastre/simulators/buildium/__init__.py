"""A Buildium Open API v1 property-management account (rental units, leases, tenants): key-pair
auth, 10 requests a second, limit/offset paging, last-updated filters, whole-object PUTs and signed
webhooks with the vendor's retry schedule. See ``app.py`` and the simulators' README."""

from cadastre.simulators.buildium.app import VENDOR_RATE_LIMIT, BuildiumSimulator, BuildiumStats
from cadastre.simulators.buildium.records import ACCOUNT_ID, DATA_EPOCH, format_time
from cadastre.simulators.buildium.webhooks import WebhookSettings, sign

__all__ = [
    "ACCOUNT_ID",
    "DATA_EPOCH",
    "VENDOR_RATE_LIMIT",
    "BuildiumSimulator",
    "BuildiumStats",
    "WebhookSettings",
    "format_time",
    "sign",
]
