"""Finished spans, kept in memory: one exporter for the whole test process, on the global SDK
provider (``observe.tracing`` installs it; a process has one, settable once)."""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cadastre.config import Settings
from cadastre.observe import configure_tracing

_exporter: InMemorySpanExporter | None = None


def span_exporter() -> InMemorySpanExporter:
    global _exporter  # one per process, like the provider it hangs on
    if _exporter is None:
        configure_tracing(Settings())
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        _exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return _exporter


def captured() -> Iterator[InMemorySpanExporter]:
    """For a ``spans`` fixture: the spans finished during the test (none from before it)."""
    exporter = span_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]
