"""A real sync against the RESO simulator on loopback, then what an operator sees of it: the
``/metrics`` exposition read over real HTTP from uvicorn (every metric family issue 9 lists, with
its labels), the spans of the run, and its log lines, each carrying the connection and the trace.

The simulator limits the rate and says so in ``X-RateLimit-*`` headers (the headroom gauge is
the vendor's own figure), sets a few records bad (quarantined), and pages in threes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from cadastre.api import create_app
from cadastre.cli.serve import serve_app
from cadastre.observe import configure_logging, get_logger
from cadastre.simulators import RateLimit, ResoSimulator, serve
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock, open_hub
from tests.spans import named

RECORDS, PAGE = 60, 25


def families(exposition: str) -> dict[str, list[Sample]]:
    """Samples by family name (a counter's family is its name without ``_total``)."""
    return {f.name: f.samples for f in text_string_to_metric_families(exposition)}


def only(samples: list[Sample], suffix: str = "") -> list[Sample]:
    """The samples of the family proper (not ``_created``; ``_bucket`` etc. when asked)."""
    return [s for s in samples if s.name.endswith(suffix) and not s.name.endswith("_created")]


def hub_and_simulator(tmp_path: Path) -> tuple[Any, ResoSimulator]:
    """A hub (to open) and a RESO simulator on one fake clock."""
    clock = fake_clock()
    sim = ResoSimulator(records=RECORDS, seed=5, clock=clock, page_size_max=PAGE,
                        rate_limit=RateLimit(50, 1.0), rate_limit_headers="x-ratelimit",
                        bad_record_rate=0.1)  # fmt: skip
    return open_hub(tmp_path, clock), sim


async def test_the_exposition_holds_every_listed_family_with_its_labels(
    tmp_path: Path, spans
) -> None:
    opened, sim = hub_and_simulator(tmp_path)
    async with opened as hub, serve(sim.app) as mls:
        await connect_reso(hub, "mls", mls.url)
        report = await hub.sync(TENANT, "mls", full=True)
        await hub.sampler.sample(TENANT)  # the backlog and token gauges (observe.sampler)
        async with serve_app(create_app(hub)) as api, httpx.AsyncClient() as client:
            answer = await client.get(f"{api.url}/metrics")  # from loopback: no token needed
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            audited = (await uow.audit.verify()).entries
        vendor = f"reso@{mls.url.removeprefix('http://')}"
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = families(answer.text)
    tally = report.tally
    assert tally.quarantined > 0
    assert tally.pages == -(-RECORDS // PAGE)

    def labelled(name: str, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
        assert name in found, f"{name} missing from the exposition"
        return {tuple(sorted(s.labels.items())): s.value for s in only(found[name], suffix)}

    at = {"vendor": vendor, "connection": "mls"}
    # request counts by outcome
    requests = labelled("cadastre_vendor_requests", "_total")
    assert requests == {tuple(sorted({**at, "outcome": "success"}.items())): tally.pages + 2}
    # latency: a histogram per vendor and connection (the token call and $metadata counted too)
    latency = labelled("cadastre_vendor_request_seconds", "_count")
    assert latency == {tuple(sorted(at.items())): tally.pages + 2}
    buckets = only(found["cadastre_vendor_request_seconds"], "_bucket")
    assert {frozenset(s.labels) for s in buckets} == {frozenset({"vendor", "connection", "le"})}
    # rate-limit headroom: the vendor's own remaining / limit, between 0 and 1
    ((labels, headroom),) = labelled("cadastre_ratelimit_headroom_ratio").items()
    assert dict(labels) == at
    assert 0.0 < headroom < 1.0
    # breaker state: closed
    assert labelled("cadastre_breaker_state") == {tuple(sorted(at.items())): 0.0}
    # records synced and quarantined
    synced = labelled("cadastre_records_synced", "_total")
    ((labels, changes),) = synced.items()
    assert labels == (("connection", "mls"), ("stream", "Property"))
    # changes made from records: all created ones, none of those the mapping set aside
    assert tally.created <= changes < tally.fetched
    quarantined = labelled("cadastre_records_quarantined", "_total")
    assert {dict(k)["connection"] for k in quarantined} == {"mls"}
    assert {frozenset(dict(k)) for k in quarantined} == {frozenset({"connection", "reason"})}
    assert sum(quarantined.values()) == tally.quarantined
    # sync lag, per connection and stream
    lag = labelled("cadastre_sync_lag_seconds")
    assert set(lag) == {(("connection", "mls"), ("stream", "Property"))}
    assert all(v >= 0 for v in lag.values())
    # outbox and delivery backlog (per tenant), token expiry (per connection)
    assert set(labelled("cadastre_outbox_backlog")) == {(("tenant", TENANT),)}
    assert set(labelled("cadastre_delivery_backlog")) == {(("tenant", TENANT),)}
    expiry = labelled("cadastre_token_expiry_seconds")
    assert set(expiry) == {(("connection", "mls"),)}
    assert all(v > 0 for v in expiry.values())
    # the run itself, and the audit log: every entry the store holds was counted, once
    assert labelled("cadastre_sync_runs", "_total") == {
        (("connection", "mls"), ("outcome", "ok")): 1.0
    }
    assert labelled("cadastre_audit_entries", "_total") == {(("tenant", TENANT),): audited}


async def test_a_proxied_remote_client_is_refused_unless_it_brings_the_token(
    tmp_path: Path,
) -> None:
    """uvicorn believes X-Forwarded-For from loopback (a reverse proxy on this machine), so the
    endpoint judges the client the proxy names, not the proxy."""
    opened, _ = hub_and_simulator(tmp_path)
    async with opened as hub, serve_app(create_app(hub)) as api, httpx.AsyncClient() as client:
        proxied = {"X-Forwarded-For": "203.0.113.7"}
        refused = await client.get(f"{api.url}/metrics", headers=proxied)
        hub.settings.metrics_token = SecretStr("a-long-metrics-token")
        unauthorised = await client.get(f"{api.url}/metrics", headers=proxied)
        allowed = await client.get(f"{api.url}/metrics", headers={
            **proxied, "Authorization": "Bearer a-long-metrics-token",
        })  # fmt: skip
        local = await client.get(f"{api.url}/metrics")
    assert refused.status_code == 403
    assert unauthorised.status_code == 401
    assert allowed.status_code == local.status_code == 200


@pytest.fixture
def debug_log() -> Any:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging("INFO")


async def test_the_runs_log_lines_carry_its_connection_and_trace(
    tmp_path: Path, spans, debug_log
) -> None:
    opened, sim = hub_and_simulator(tmp_path)
    async with opened as hub, serve(sim.app) as mls:
        await connect_reso(hub, "mls", mls.url)
        before = len(debug_log())
        await hub.sync(TENANT, "mls", full=True)
        during = debug_log()[before:]
        get_logger("cadastre.test").info("after the run")
    (run,) = named(spans, "sync.run")
    trace_id = f"{run.context.trace_id:032x}"
    assert len(during) >= 3  # the token, $metadata and each page's call, at DEBUG
    for line in during:
        assert (line.get("tenant"), line.get("connection")) == (TENANT, "mls"), line
        assert line.get("trace_id") == trace_id, line
        assert len(line["span_id"]) == 16
    after = debug_log()[-1]
    assert after["msg"] == "after the run"
    assert not {"trace_id", "span_id", "tenant", "connection"} & after.keys()
    # the run's spans: pages and vendor calls under it
    assert dict(run.attributes or {})["cadastre.fetched"] == RECORDS
    pages = named(spans, "sync.page")
    assert len(pages) == -(-RECORDS // PAGE)
    calls = [s for s in spans.get_finished_spans() if s.name.startswith("GET reso@")]
    for child in (*pages, *calls):
        assert child.context.trace_id == run.context.trace_id
