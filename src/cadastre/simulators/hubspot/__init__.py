"""A HubSpot CRM (contacts and deals, OAuth 2.0, v3-signed batched webhooks)."""

from cadastre.simulators.hubspot.admin import seed
from cadastre.simulators.hubspot.app import (
    API_LIMIT,
    CRM_UI,
    INTEGRATION,
    SEARCH_LIMIT,
    HubSpotSimulator,
    HubSpotStats,
)
from cadastre.simulators.hubspot.webhooks import WebhookSettings, sign_v3

__all__ = [
    "API_LIMIT",
    "CRM_UI",
    "INTEGRATION",
    "SEARCH_LIMIT",
    "HubSpotSimulator",
    "HubSpotStats",
    "WebhookSettings",
    "seed",
    "sign_v3",
]
