"""No secret in any sink (RELIABILITY.md #20): a full sync over real HTTP with canary credentials,
a refused refresh, a call with a refused API key and a forced exception with its traceback, all at
DEBUG; then every log line (the hub's own handler and a raw capture of every logger, httpx's and
httpcore's included), every span and its attributes (the API's server spans too, for requests
that carried a canary in their bearer token, query string and headers), the metrics exposition
(read from the registry and from ``GET /metrics``), the API's answers, the outbox, the reprs of
the settings and the hub, and the credential's error messages are searched for the canaries:
0 occurrences."""

from __future__ import annotations

import io
import logging
import secrets
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from cadastre.api import create_app
from cadastre.bootstrap import bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.errors import CadastreError
from cadastre.observe import configure_logging
from cadastre.ports import ApiKeyScope
from cadastre.simulators import ResoSimulator, serve
from cadastre.simulators.auth import AuthSimulator
from cadastre.testing import FakeClock
from tests.spans import captured

TENANT = "acme"
LOOPBACK = ("127.0.0.0/8", "::1")
MAPPING = "mapping: test-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
CLIENT_SECRET = f"canary-secret-{secrets.token_hex(6)}"
API_KEY = f"canary-apikey-{secrets.token_hex(6)}"
REFRESH_TOKEN = f"canary-refresh-{secrets.token_hex(6)}"


class RawCapture(logging.Handler):
    """Every record of every logger, formatted with its traceback, unredacted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(f"{record.name} {text} {record.__dict__}")


@pytest.fixture
def raw_logs() -> Iterator[RawCapture]:
    capture = RawCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in ("httpx", "httpcore", "cadastre"):
        logging.getLogger(name).addHandler(capture)  # "cadastre" does not propagate
    yield capture
    for name in ("httpx", "httpcore", "cadastre"):
        logging.getLogger(name).removeHandler(capture)
    root.removeHandler(capture)
    root.setLevel(previous)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from captured()


@pytest.mark.timeout(120)
async def test_no_canary_in_logs_spans_metrics_api_or_errors(
    tmp_path: Path, raw_logs: RawCapture, spans: InMemorySpanExporter
) -> None:
    hub_log = io.StringIO()
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "test-mls.yaml").write_text(MAPPING)
    settings = Settings(data_dir=tmp_path, mappings_dir=tmp_path / "mappings",
                        gateway_allow_hosts=LOOPBACK, log_level="DEBUG")  # fmt: skip
    clock = FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC), autojump=True)
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    configure_logging("DEBUG", json=True, stream=hub_log)
    raw_logs.lines.clear()  # configure_logging re-adds the hub's handler; the capture stays
    logging.getLogger("cadastre").addHandler(raw_logs)
    errors: list[str] = []
    await hub.tenants.create(TENANT, "Acme")
    reso = ResoSimulator(records=120, seed=3, client_id="demo-client", client_secret=CLIENT_SECRET,
                         clock=clock)  # fmt: skip
    auth = AuthSimulator(api_keys=["the-vendors-only-key"])
    key = (await hub.keys.create(TENANT, ApiKeyScope.READ, label="leaks")).plaintext
    try:
        async with serve(reso.app) as mls, serve(auth.app) as vendor:
            await hub.vault.add(TENANT, "mls", "oauth2_client_credentials",
                                {"client_id": "demo-client", "client_secret": CLIENT_SECRET},
                                {"egress_ips": ["203.0.113.7"]})  # fmt: skip
            await hub.connections.put(TENANT, ConnectionSpec(
                name="mls", system="mls", connector="mls/reso", credential="mls",
                config={"base_url": f"{mls.url}/odata", "token_url": f"{mls.url}/oauth/token",
                        "mapping": "test-mls", "gateway": {"allow_hosts": list(LOOPBACK)}},
            ))  # fmt: skip
            report = await hub.sync(TENANT, "mls", full=True)  # 1. a full sync
            assert report.tally.fetched == 120
            # 2. a refresh the vendor refuses (the grant was revoked: invalid_grant)
            await hub.vault.add(
                TENANT, "xero", "oauth2_authorization_code",
                {"client_id": "demo-client", "client_secret": "demo-secret",
                 "refresh_token": REFRESH_TOKEN},
                {"token_url": f"{vendor.url}/oauth/token"},
            )  # fmt: skip
            endpoint, _ = await hub.token_endpoint(TENANT, "xero")
            try:
                await hub.tokens.access_token(TENANT, "xero", endpoint, actor="test")
            except CadastreError as error:
                errors += [str(error), repr(error), "".join(traceback.format_exception(error))]
            # 3. an API key the vendor refuses, through a real gateway
            await hub.vault.add(TENANT, "pms", "api_key", {"api_key": API_KEY},
                                {"rotate_url": f"{vendor.url}/keys/rotate"})  # fmt: skip
            endpoint, _ = await hub.token_endpoint(TENANT, "pms")
            try:
                await hub.tokens.rotate_api_key(TENANT, "pms", endpoint, actor="test")
            except CadastreError as error:
                errors += [str(error), repr(error), "".join(traceback.format_exception(error))]
            # 4. a forced exception with a traceback, logged
            try:
                opened = await hub.vault.open(TENANT, "mls", actor="test", purpose="test")
                raise RuntimeError(f"boom while holding {opened}")
            except RuntimeError:
                logging.getLogger("cadastre.test").exception("forced failure")
        app = create_app(hub)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://hub.test") as api:  # fmt: skip
            answers = [
                (await api.get(path, headers={"Authorization": f"Bearer {key}"})).text
                for path in ("/v1/credentials", "/v1/connections/health")
            ]
            # 5. the API refusing canaries: a bearer token, a query string, a header
            refused = await api.get(f"/v1/credentials?client_secret={CLIENT_SECRET}",
                                    headers={"Authorization": f"Bearer {API_KEY}",
                                             "X-Refresh": REFRESH_TOKEN})  # fmt: skip
            answers.append(refused.text)
            assert refused.status_code == 401
            metrics = await api.get("/metrics")  # the test client is on loopback
            assert metrics.status_code == 200
        remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=remote, base_url="http://hub.test") as outside:
            denied = await outside.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
            answers.append(denied.text)
            assert denied.status_code == 403
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            outbox = [m.event.model_dump_json() for m in await uow.outbox.pending(limit=1000)]
        sinks = {
            "hub log": hub_log.getvalue(),
            "every logger": "\n".join(raw_logs.lines),
            "spans": "\n".join(s.to_json() for s in spans.get_finished_spans()),
            "metrics": generate_latest(hub.metrics.registry).decode(),
            "/metrics": metrics.text,
            "api": "\n".join(answers),
            "outbox": "\n".join(outbox),
            "errors": "\n".join(errors),
            "reprs": "\n".join(repr(x) for x in (settings, hub, hub.vault, hub.tokens)),
        }
    finally:
        await hub.close()
    assert "forced failure" in hub_log.getvalue()  # the logs were written...
    assert "cadastre.gateway.metering" in hub_log.getvalue()
    assert errors  # ...the failures happened...
    assert "cadastre_vendor_requests_total" in sinks["/metrics"]
    assert "GET /v1/credentials" in sinks["spans"]  # the API's server spans were there to search
    assert "sync.run" in sinks["spans"]
    assert any("needs_reauth" in e for e in errors)
    for sink, text in sinks.items():  # ...and none of them shows a secret
        for canary in (CLIENT_SECRET, API_KEY, REFRESH_TOKEN):
            assert canary not in text, f"{canary[:14]}... found in {sink}"
    # the reso simulator's access tokens are secrets too
    for token in reso._tokens._expiry:
        for sink, text in sinks.items():
            assert token not in text, f"an access token found in {sink}"
