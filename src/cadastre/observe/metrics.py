"""Every Prometheus metric Cadastre exports, named in one place.

Later issues add signals here (and nowhere else), so names stay consistent: ``cadastre_`` prefix,
base units in the name (``_seconds``, ``_bytes``), ``_total`` for counters, labels from ``LABELS``.
Metrics live in their own ``CollectorRegistry`` so tests and several hubs in one process do not
collide on the global default registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Labels are a closed set: a new label is a design decision, not a typo.
LABELS = frozenset(
    {"tenant", "vendor", "connection", "entity", "outcome", "reason", "state", "stream"}
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...]


SPECS: tuple[MetricSpec, ...] = (
    # sync engine (issue: foundation)
    MetricSpec("cadastre_changes_applied_total", "counter",
               "Changes applied to the canonical store.", ("tenant", "entity", "outcome")),
    MetricSpec("cadastre_fields_refused_total", "counter",
               "Field writes refused by ownership, staleness or conflict policy.",
               ("tenant", "entity", "reason")),
    MetricSpec("cadastre_apply_seconds", "histogram",
               "Time to apply one change, store transaction included.", ("entity",)),
    # ingestion
    MetricSpec("cadastre_records_synced_total", "counter",
               "Vendor records turned into canonical changes.", ("connection", "stream")),
    MetricSpec("cadastre_records_quarantined_total", "counter",
               "Vendor records set aside with a reason.", ("connection", "reason")),
    MetricSpec("cadastre_sync_lag_seconds", "gauge",
               "Age of the newest vendor record not yet applied.", ("connection", "stream")),
    # vendor gateway
    MetricSpec("cadastre_vendor_requests_total", "counter",
               "Outbound vendor calls by classified outcome.", ("vendor", "connection", "outcome")),
    MetricSpec("cadastre_vendor_request_seconds", "histogram",
               "Outbound vendor call latency.", ("vendor", "connection")),
    MetricSpec("cadastre_ratelimit_headroom_ratio", "gauge",
               "Share of the vendor rate budget still free (0..1).", ("vendor", "connection")),
    MetricSpec("cadastre_ratelimit_wait_seconds", "histogram",
               "Time a call waited for its rate-limit slots.", ("vendor", "connection")),
    MetricSpec("cadastre_ratelimit_fallback", "gauge",
               "1 while the shared rate-limit store (Redis) is unreachable and each worker keeps "
               "a local share of every limit.", ()),
    MetricSpec("cadastre_breaker_state", "gauge",
               "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ("vendor", "connection")),
    MetricSpec("cadastre_breaker_transitions_total", "counter",
               "Circuit breaker state changes, by the state entered.",
               ("vendor", "connection", "state")),
    MetricSpec("cadastre_sync_runs_total", "counter",
               "Sync runs by how they ended (ok, failed, timed_out).", ("connection", "outcome")),
    # events
    MetricSpec("cadastre_outbox_backlog", "gauge",
               "Outbox events not yet published to the bus.", ("tenant",)),
    MetricSpec("cadastre_events_published_total", "counter",
               "Outbox events the relay published to the bus.", ("tenant",)),
    MetricSpec("cadastre_delivery_backlog", "gauge",
               "Outbound webhook deliveries waiting.", ("tenant",)),
    MetricSpec("cadastre_webhook_attempts_total", "counter",
               "Outbound webhook attempts, by what they left the delivery (delivered, dead) or "
               "why they will be retried (failed, rate_limited, gone).", ("tenant", "outcome")),
    MetricSpec("cadastre_webhooks_received_total", "counter",
               "Verified vendor webhooks durably stored (outcome stored) or found held already "
               "(outcome duplicate).", ("connection", "outcome")),
    MetricSpec("cadastre_webhooks_refused_total", "counter",
               "Vendor webhook requests refused, by reason (connection empty when unknown).",
               ("connection", "reason")),
    MetricSpec("cadastre_webhooks_normalised_total", "counter",
               "Stored webhooks normalised, by outcome (processed, quarantined, retry, failed).",
               ("connection", "outcome")),
    # auth
    MetricSpec("cadastre_token_expiry_seconds", "gauge",
               "Seconds until a vendor access token expires.", ("connection",)),
    # store
    MetricSpec("cadastre_audit_entries_total", "counter",
               "Entries appended to the hash-chained audit log.", ("tenant",)),
    # write-back (issue 8)
    MetricSpec("cadastre_writeback_targets_total", "counter",
               "Write-back targets settled, by their new state (applied, failed, shadowed, ...).",
               ("tenant", "connection", "state")),
    MetricSpec("cadastre_writeback_recoveries_total", "counter",
               "Write-back targets found sending after a crash (or a possibly sent attempt) "
               "and recovered by resend or read-back.", ("tenant", "connection")),
    MetricSpec("cadastre_writeback_echoes_dropped_total", "counter",
               "Vendor changes recognised as the echo of our own write-back and dropped.",
               ("tenant", "connection")),
    # identity resolution (issue 8)
    MetricSpec("cadastre_identity_links_total", "counter",
               "Identity links made or changed, by their new state.", ("state",)),
    MetricSpec("cadastre_identity_propagations_total", "counter",
               "Linked person fields carried to the linked record: applied, equal, refused.",
               ("outcome",)),
)  # fmt: skip

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class Metrics:
    """The live metric objects for one hub, created from ``SPECS``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        for spec in SPECS:
            unknown = set(spec.labels) - LABELS
            if unknown:
                raise ValueError(f"{spec.name}: labels {sorted(unknown)} are not in LABELS")
            kwargs: dict[str, object] = {}
            if spec.kind == "histogram":
                kwargs["buckets"] = LATENCY_BUCKETS
            # prometheus_client appends _total itself; give it the stem so exposition matches SPECS
            name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
            self._metrics[spec.name] = _KINDS[spec.kind](
                name, spec.help, spec.labels, registry=self.registry, **kwargs
            )

    def counter(self, name: str) -> Counter:
        metric = self._metrics[name]
        if not isinstance(metric, Counter):
            raise TypeError(f"{name} is not a counter")
        return metric

    def gauge(self, name: str) -> Gauge:
        metric = self._metrics[name]
        if not isinstance(metric, Gauge):
            raise TypeError(f"{name} is not a gauge")
        return metric

    def histogram(self, name: str) -> Histogram:
        metric = self._metrics[name]
        if not isinstance(metric, Histogram):
            raise TypeError(f"{name} is not a histogram")
        return metric
