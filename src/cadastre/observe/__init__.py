"""Observability: metric names in one place, structured logs with secret redaction."""

from cadastre.observe.logging import (
    SECRETS,
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    get_logger,
    neutralise,
    redact_text,
)
from cadastre.observe.metrics import LABELS, SPECS, Metrics, MetricSpec

__all__ = [
    "LABELS",
    "SECRETS",
    "SPECS",
    "JsonFormatter",
    "MetricSpec",
    "Metrics",
    "RedactingFilter",
    "configure_logging",
    "get_logger",
    "neutralise",
    "redact_text",
]
