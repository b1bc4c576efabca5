"""A RESO Web API MLS: OAuth2 client credentials, OData ``Property`` (and ``Media``) with key-set
paging, idempotent writes (RESO Add with ``Idempotency-Key``), and regional dialects configured by
data files (``dialects/``), pushing its changes as signed webhooks once subscribed."""

from cadastre.simulators.reso.app import DEFAULT_RATE_LIMIT, ResoSimulator
from cadastre.simulators.reso.dialect import Dialect, dialect_names, load_dialect
from cadastre.simulators.reso.records import DATA_EPOCH, DEFECTS
from cadastre.simulators.reso.webhooks import WebhookEmitter, WebhookSettings, WebhookStats
from cadastre.simulators.reso.writes import ResoStats

__all__ = [
    "DATA_EPOCH",
    "DEFAULT_RATE_LIMIT",
    "DEFECTS",
    "Dialect",
    "ResoSimulator",
    "ResoStats",
    "WebhookEmitter",
    "WebhookSettings",
    "WebhookStats",
    "dialect_names",
    "load_dialect",
]
