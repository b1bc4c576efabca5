"""OpenTelemetry traces: the SDK always installed, an exporter only when one is configured.

``configure_tracing(settings)`` (``bootstrap`` calls it) installs the SDK's ``TracerProvider``
as the process's global one, so every span the code starts (the gateway's client spans, the
API's server spans, sync runs and pages, webhook normalisation, write-back sends) is a real span
with real ids, and every log line written inside one carries its ``trace_id`` (``observe.
logging``), whether or not anything is exported. ``CADASTRE_OTEL_EXPORTER`` says where spans go:

| value | spans go to |
|---|---|
| ``none`` (default) | nowhere: ids for the logs only |
| ``console`` | standard error, one JSON document per span (stdout is the CLI's) |
| ``otlp`` | a collector over OTLP/HTTP at ``CADASTRE_OTEL_ENDPOINT`` (the ``otel`` extra) |

The standard ``OTEL_*`` variables still apply where the SDK reads them (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``...).

A process has one global provider, settable once, while tests (and the demo) bootstrap many hubs
in one process. So the provider is installed on the first call only, with one span processor of
ours (``_Export``) whose exporter each later call replaces when the setting changed: calling
again is cheap and idempotent, and the last hub's setting wins. When something else installed an
SDK provider first (an operator's ``opentelemetry-instrument``, a test), ours is added to it
rather than fighting it; a provider that is not the SDK's is left alone (said once, in the log).

What goes into a span is chosen where it is started: names and ids of tenants, connections,
streams and routes, counts and status codes; never a header, a query string, a body or an
exception's text (which may quote a vendor).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from cadastre import __version__
from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.util.types import AttributeValue

    from cadastre.config import Settings

EXPORTERS = ("none", "console", "otlp")
_log = logging.getLogger("cadastre.observe.tracing")


@contextlib.contextmanager
def traced(
    tracer: trace.Tracer, name: str, attributes: Mapping[str, AttributeValue] | None = None, *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL, context: Context | None = None,
) -> Iterator[trace.Span]:  # fmt: skip
    """A span, current inside the block, that an exception leaving the block marks failed with
    the exception's type only. OpenTelemetry's own would put the exception's text in the status
    and an event, and a text may quote a vendor's answer (or, for a bug, anything at all).
    ``context`` is the parent's (a caller's ``traceparent``); unset, the current span's."""
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, record_exception=False,
        set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield span
        except BaseException as error:
            span.set_status(trace.StatusCode.ERROR, type(error).__name__)
            raise


class _Export(SpanProcessor):
    """The span processor Cadastre adds to the provider, once; it hands finished spans to the
    exporter of the latest configuration (none, console or OTLP)."""

    def __init__(self) -> None:
        self.key: tuple[str, str | None] = ("none", None)
        self._inner: SpanProcessor | None = None

    def use(self, key: tuple[str, str | None], inner: SpanProcessor | None) -> None:
        old, self._inner, self.key = self._inner, inner, key
        if old is not None:
            old.shutdown()  # a batch exporter sends what it holds before it goes

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        inner = self._inner
        if inner is not None:
            inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self._inner
        if inner is not None:
            inner.on_end(span)

    def shutdown(self) -> None:
        inner = self._inner
        if inner is not None:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        inner = self._inner
        return True if inner is None else inner.force_flush(timeout_millis)


_EXPORT = _Export()
_lock = threading.Lock()
_attached_to: trace.TracerProvider | None = None


def configure_tracing(settings: Settings) -> None:
    """Install the SDK provider (first call), and export spans as ``settings`` say.
    ``ConfigurationError`` for an exporter that cannot be built (``otlp`` without its package,
    an endpoint that is not an http(s) URL); the previous exporter then stays."""
    exporter = settings.otel_exporter
    endpoint = (
        settings.otel_endpoint.get_secret_value() if settings.otel_endpoint is not None else None
    )
    with _lock:
        _attach()
        # The endpoint may hold a password: what is kept to compare with is its digest.
        digest = hashlib.sha256(endpoint.encode()).hexdigest() if endpoint is not None else None
        key = (exporter, digest)
        if key == _EXPORT.key:
            return
        _EXPORT.use(key, _processor(exporter, endpoint))


def _attach() -> None:
    global _attached_to  # one global provider per process, as OpenTelemetry has it
    current = trace.get_tracer_provider()
    if _attached_to is not None and current is _attached_to:
        return
    if isinstance(current, TracerProvider):  # an SDK provider someone else installed
        current.add_span_processor(_EXPORT)
        _attached_to = current
        return
    if not isinstance(current, trace.ProxyTracerProvider):
        if _attached_to is None:
            _log.warning("a tracer provider that is not OpenTelemetry's SDK is installed "
                         "(%s); Cadastre exports no spans through it",
                         type(current).__name__)  # fmt: skip
        _attached_to = current
        return
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(_EXPORT)
    trace.set_tracer_provider(provider)
    _attached_to = trace.get_tracer_provider()  # ours, unless another thread won the race
    if _attached_to is not provider and isinstance(_attached_to, TracerProvider):
        _attached_to.add_span_processor(_EXPORT)


def _resource() -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), named
    ``cadastre`` unless the environment names it otherwise."""
    detected = Resource.create()
    name = str(detected.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        name = "cadastre"
    return detected.merge(Resource({SERVICE_NAME: name, SERVICE_VERSION: __version__}))


def _processor(exporter: str, endpoint: str | None) -> SpanProcessor | None:
    if exporter == "none":
        return None
    if exporter == "console":
        # stderr: standard output belongs to the CLI's answers (and the logs go to stderr too)
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    if exporter == "otlp":
        return BatchSpanProcessor(_otlp(endpoint))
    raise ConfigurationError(
        f"CADASTRE_OTEL_EXPORTER {exporter!r} is not one of {', '.join(EXPORTERS)}"
    )


def _otlp(endpoint: str | None) -> SpanExporter:
    try:
        # Imported here: an optional extra (and protobuf) only an OTLP hub needs.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigurationError(
            "CADASTRE_OTEL_EXPORTER=otlp needs the OTLP exporter, which is an optional extra: "
            "pip install 'cadastre[otel]'"
        ) from None
    if endpoint is None:  # the exporter's own: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT or localhost
        return OTLPSpanExporter()
    return OTLPSpanExporter(endpoint=traces_url(endpoint))


def traces_url(endpoint: str) -> str:
    """Where OTLP/HTTP traces go: a collector's base URL (``http://collector:4318``) gets
    ``/v1/traces``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; a URL with a path is used as it is.
    ``ConfigurationError`` (without the URL, which may hold a password) unless http(s)."""
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigurationError("CADASTRE_OTEL_ENDPOINT must be an http(s) URL")
    if parts.path in {"", "/"}:
        return parts._replace(path="/v1/traces").geturl()
    return endpoint
