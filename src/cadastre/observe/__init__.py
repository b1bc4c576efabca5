"""Observability: metric names in one place, structured logs with secret redaction, traces,
and the tenant and connection the work in progress is for."""

from cadastre.observe.context import working_for
from cadastre.observe.logging import (
    SECRETS,
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    correlation,
    get_logger,
    neutralise,
    redact_text,
)
from cadastre.observe.metrics import LABELS, SPECS, Metrics, MetricSpec
from cadastre.observe.sampler import Freshness, ObservationSampler
from cadastre.observe.signals import (
    LATENCY_EDGES,
    CallObservation,
    Observations,
    endpoint_of,
    error_fingerprint,
    latency_bucket,
    merge_rollups,
    minute_of,
    quantile,
    shape_of,
)
from cadastre.observe.tracing import configure_tracing, traced

__all__ = [
    "LABELS",
    "LATENCY_EDGES",
    "SECRETS",
    "SPECS",
    "CallObservation",
    "Freshness",
    "JsonFormatter",
    "MetricSpec",
    "Metrics",
    "ObservationSampler",
    "Observations",
    "RedactingFilter",
    "configure_logging",
    "configure_tracing",
    "correlation",
    "endpoint_of",
    "error_fingerprint",
    "get_logger",
    "latency_bucket",
    "merge_rollups",
    "minute_of",
    "neutralise",
    "quantile",
    "redact_text",
    "shape_of",
    "traced",
    "working_for",
]
