"""``configure_tracing``: the SDK installed once per process, the exporter chosen by the settings
(none, console, OTLP over HTTP to a real receiver on loopback), and spans that say an error's
type, never its text."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.errors import ConfigurationError
from cadastre.observe import configure_tracing, traced
from cadastre.observe.tracing import traces_url
from tests.spans import named, span_exporter

tracer = trace.get_tracer("tests.tracing")
OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


@pytest.fixture(autouse=True)
def back_to_none() -> Iterator[None]:
    span_exporter()
    yield
    configure_tracing(Settings(otel_exporter="none"))


def test_the_sdk_provider_is_installed_once_and_calls_are_idempotent() -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    processors = len(provider._active_span_processor._span_processors)
    for _ in range(3):
        configure_tracing(Settings())
    assert trace.get_tracer_provider() is provider
    assert len(provider._active_span_processor._span_processors) == processors
    with tracer.start_as_current_span("x") as span:
        assert span.get_span_context().is_valid


def test_console_writes_each_span_to_stderr_and_none_stops_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_tracing(Settings(otel_exporter="console"))
    configure_tracing(Settings(otel_exporter="console"))  # not twice per span
    with tracer.start_as_current_span("to-the-console"):
        pass
    out, err = capsys.readouterr()
    assert err.count('"name": "to-the-console"') == 1
    assert out == ""  # stdout is the CLI's
    configure_tracing(Settings(otel_exporter="none"))
    with tracer.start_as_current_span("to-nowhere"):
        pass
    assert "to-nowhere" not in capsys.readouterr().err


def test_otlp_without_its_package_is_a_clear_error_and_keeps_the_exporter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_tracing(Settings(otel_exporter="console"))
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'cadastre\[otel\]'"):
        configure_tracing(Settings(otel_exporter="otlp"))
    with tracer.start_as_current_span("still-console"):
        pass
    assert '"name": "still-console"' in capsys.readouterr().err


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://collector:4318/", "https://collector:4318/v1/traces"),
        ("http://collector:4318/custom/traces", "http://collector:4318/custom/traces"),
    ],
)
def test_a_collector_base_url_gets_the_traces_path(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


@pytest.mark.parametrize("endpoint", ["collector:4318", "ftp://user:hunter2@x/", "http://"])
def test_an_endpoint_that_is_not_http_is_refused_without_quoting_it(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an http") as refused:
        configure_tracing(Settings(otel_exporter="otlp", otel_endpoint=SecretStr(endpoint)))
    assert endpoint not in str(refused.value)


def test_an_unknown_exporter_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="otel_exporter"):
        Settings(otel_exporter="jaeger")  # type: ignore[arg-type]


async def test_otlp_sends_spans_to_a_collector_over_http() -> None:
    received: list[tuple[str, str, bytes]] = []

    async def collect(request: Request) -> Response:
        received.append((request.url.path, request.headers["content-type"], await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    collector = Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])])
    async with serve_app(collector) as running:
        configure_tracing(Settings(otel_exporter="otlp", otel_endpoint=SecretStr(running.url)))
        with tracer.start_as_current_span("to-the-collector"):
            pass
        # the batch exporter sends from its own thread, with a blocking client: flush off-loop
        flushed = await asyncio.to_thread(_flush)
        assert flushed
    ((path, content_type, body),) = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert b"to-the-collector" in body


def _flush() -> bool:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    return provider.force_flush(10_000)


def test_traced_marks_a_failure_by_its_type_never_its_text(spans) -> None:
    with pytest.raises(RuntimeError), traced(tracer, "failing", {"cadastre.stream": "Property"}):
        raise RuntimeError("vendor said: token=canary-abc123")
    (span,) = named(spans, "failing")
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "RuntimeError"
    assert span.events == ()  # no exception event with its message
    assert dict(span.attributes or {}) == {"cadastre.stream": "Property"}
    assert "canary" not in span.to_json()
