"""A QuickBooks Online (Accounting API v3) simulator: OAuth 2.0 with rotating refresh tokens,
accounts, customers, payments and journal entries with SyncToken concurrency and ``requestid``
replays, the query language, CDC, Intuit's rate limits and signed webhooks. See README.md beside
the simulators and ``app.py``."""

from cadastre.simulators.quickbooks.app import DEFAULT_REALM, QboStats, QuickBooksSimulator
from cadastre.simulators.quickbooks.clock import OffsetClock
from cadastre.simulators.quickbooks.webhooks import (
    INTUIT_SCHEDULE,
    WebhookSettings,
    intuit_signature,
)

__all__ = [
    "DEFAULT_REALM",
    "INTUIT_SCHEDULE",
    "OffsetClock",
    "QboStats",
    "QuickBooksSimulator",
    "WebhookSettings",
    "intuit_signature",
]
