"""``GET /metrics`` through the ASGI client, with the client's address faked: loopback reads it
freely; anyone else needs the configured token (401 without it, 403 when none is configured).
And the server spans of the API: named by route template, never a path, query or header."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from cadastre.api import create_app
from cadastre.api.tracing import ServerSpans
from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.observe import configure_logging
from cadastre.testing import FakeClock
from tests.spans import captured
from tests.unit.api.conftest import assert_problem

TOKEN = "metrics-token-0123456789abcdef"
REMOTE = ("203.0.113.9", 40000)

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = Settings(data_dir=tmp_path, metrics_token=SecretStr(TOKEN))
    hub = await bootstrap(settings, clock=FakeClock(), configure_logs=False)
    await hub.tenants.create("acme", "Acme")  # an audit entry: the exposition has a sample
    yield hub
    await hub.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from captured()


@pytest.fixture
def client(hub: Hub) -> Client:
    @asynccontextmanager
    async def open_client(address: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(create_app(hub), client=address)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
            yield c

    return open_client


@pytest.mark.parametrize("address", [("127.0.0.1", 5000), ("127.8.9.10", 5000), ("::1", 5000)])
async def test_loopback_clients_read_the_exposition_without_a_token(client, address) -> None:
    async with client(address) as c:
        response = await c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert 'cadastre_audit_entries_total{tenant="acme"} 1.0' in response.text
    assert "# TYPE cadastre_vendor_requests_total counter" in response.text


async def test_a_remote_client_needs_the_token(client) -> None:
    async with client(REMOTE) as c:
        missing = await c.get("/metrics")
        wrong = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        basic = await c.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        right = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        cased = await c.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    for refused in (missing, wrong, basic):
        assert_problem(refused, 401)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text
    assert right.status_code == cased.status_code == 200
    assert "cadastre_audit_entries_total" in right.text


async def test_no_token_configured_means_loopback_only(hub: Hub, client) -> None:
    hub.settings.metrics_token = None
    async with client(REMOTE) as c:
        refused = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    body = assert_problem(refused, 403)
    assert "CADASTRE_METRICS_TOKEN" in body["detail"]
    hub.settings.metrics_token = SecretStr("")  # an empty one is none, not "anything goes"
    async with client(REMOTE) as c:
        assert_problem(await c.get("/metrics", headers={"Authorization": "Bearer "}), 403)


async def test_a_scraper_asking_for_openmetrics_gets_it(client) -> None:
    async with client(("127.0.0.1", 5000)) as c:
        response = await c.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_requests_get_server_spans_named_by_route_template(client, hub: Hub, spans) -> None:
    async with client(REMOTE) as c:
        headers = {"Authorization": "Bearer cad_x_y", "X-Note": "header-value"}
        await c.get("/v1/listings/L-123?city=Austin&code=oauth-code-secret", headers=headers)
        await c.get("/no/such/path/L-123")
        await c.post("/webhooks/acme/nowhere", content=b"{}")  # answered ahead: no span
    names = [(s.name, s.kind) for s in spans.get_finished_spans()]
    server = trace.SpanKind.SERVER
    assert names == [("GET /v1/listings/{listing_id}", server), ("GET", server)]
    listing, unknown = spans.get_finished_spans()
    assert dict(listing.attributes or {}) == {
        "http.request.method": "GET", "url.scheme": "http",
        "http.route": "/v1/listings/{listing_id}", "http.response.status_code": 401,
    }  # fmt: skip
    assert "http.route" not in (unknown.attributes or {})
    assert (unknown.attributes or {})["http.response.status_code"] == 404
    text = "".join(s.to_json() for s in spans.get_finished_spans())
    for leak in ("L-123", "Austin", "oauth-code-secret", "cad_x_y", "header-value", "nowhere"):
        assert leak not in text


async def test_a_traceparent_makes_the_request_a_child_of_the_callers_trace(client, spans):
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with client(REMOTE) as c:
        await c.get("/healthz", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
    (span,) = spans.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == caller_trace
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == caller_span


async def test_a_5xx_marks_the_server_span_failed_and_a_4xx_does_not(client, hub, spans):
    app = create_app(hub)

    @app.get("/explode")
    async def explode() -> None:
        raise RuntimeError("boom with a secret-ish text")

    transport = httpx.ASGITransport(app, client=REMOTE, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        assert (await c.get("/explode")).status_code == 500
        assert (await c.get("/metrics")).status_code == 401
    failed, refused = spans.get_finished_spans()
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert "secret-ish" not in failed.to_json()
    assert refused.status.status_code is trace.StatusCode.UNSET


async def test_a_mounted_apps_routes_are_named_behind_its_prefix(spans) -> None:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["name"])

    inner = Starlette(routes=[Route("/pages/{name}", page)])
    app = ServerSpans(Starlette(routes=[Mount("/console", app=inner)]))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        assert (await c.get("/console/pages/fleet")).text == "fleet"
        assert (await c.get("/console/none/such")).status_code == 404
    found, missing = spans.get_finished_spans()
    assert found.name == "GET /console/pages/{name}"
    assert missing.name == "GET /console"


async def test_a_webhook_intakes_log_lines_carry_the_paths_tenant_and_connection(client) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        async with client(REMOTE) as c:
            refused = await c.post("/webhooks/acme/nowhere", content=b"{}")
    finally:
        configure_logging("INFO")
    assert refused.status_code == 404
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refusals = [line for line in lines if "webhook refused" in line["msg"]]
    assert refusals
    for line in refusals:
        assert (line["tenant"], line["connection"]) == ("acme", "nowhere")
