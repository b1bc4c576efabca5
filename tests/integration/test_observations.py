"""Observations of real syncs: the RESO simulator on loopback, the hub on SQLite, one fake clock.
The minute rows add up to what the simulator saw and what the sync reported, a faulted run's
errors are counted by status with one fingerprint per status (request ids and times aside), and
the sampler's gauges are what the store holds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cadastre.bootstrap import Hub
from cadastre.errors import CadastreError
from cadastre.observe import LATENCY_EDGES, latency_bucket, series
from cadastre.ports import MinuteRollup
from cadastre.simulators import FaultProfile, ResoSimulator, serve
from cadastre.sync import SyncReport
from cadastre.testing import FakeClock
from tests.integration.mls_hub import (
    NOW,
    RESO_LOGIN,
    TENANT,
    connect_reso,
    fake_clock,
    open_hub,
)

MLS, FAULTED = "test-mls", "failing-mls"
LOGINS = {"mls-client": RESO_LOGIN, "failing-client": RESO_LOGIN}  # a token per vendor
LATENCY = 0.2


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


async def minutes(hub: Hub, connection: str = MLS) -> list[MinuteRollup]:
    await hub.sampler.flush()
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return await uow.observations.window(since=NOW, connection=connection)


def quarantined_metric(hub: Hub) -> float:
    return sum(
        s.value
        for m in hub.metrics.registry.collect()
        if m.name == "cadastre_records_quarantined"
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("connection") == MLS
    )


async def test_syncs_are_observed_call_by_call_and_gauges_match_the_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    """One hub (its start-up is most of the cost), two connections: a clean one with latency
    and bad records, and one whose vendor fails 30 % of its calls."""
    sim = ResoSimulator(records=60, seed=5, clock=clock, rate_limit=None, bad_record_rate=0.1,
                        faults=FaultProfile(latency=LATENCY, paths=("/odata",)))  # fmt: skip
    faults = FaultProfile(error_rate=0.3, seed=4, paths=("/odata",))
    failing = ResoSimulator(records=100, seed=6, clock=clock, rate_limit=None, faults=faults)
    async with (
        open_hub(tmp_path, clock, credentials=LOGINS) as hub,
        serve(sim.app) as running,
        serve(failing.app) as down,
    ):
        await connect_reso(hub, MLS, running.url, page_size=25)
        await connect_reso(hub, FAULTED, down.url, page_size=20, credential="failing-client")
        report = await hub.sync(TENANT, MLS)
        await clean_run_observed(hub, sim, report, running.url)
        await gauges_match_the_store(hub, clock, report)
        try:
            await hub.sync(TENANT, FAULTED)
            ended = "sync_ok"
        except CadastreError:
            ended = "sync_failed"
        faulted_run_observed(await minutes(hub, FAULTED), failing, ended)


async def clean_run_observed(hub: Hub, sim: ResoSimulator, report: SyncReport, url: str) -> None:
    rollups = await minutes(hub)
    assert report.tally.quarantined > 0
    assert series.counter(rollups, "records_synced") == report.tally.stored
    assert series.counter(rollups, "records_quarantined") == report.tally.quarantined
    assert series.counter(rollups, "sync_ok") == 1
    assert quarantined_metric(hub) == report.tally.quarantined
    # every request the simulator answered, the token request included, and nothing else
    assert series.calls(rollups) == sim.stats.requests
    assert series.statuses(rollups) == {"200": sim.stats.requests}
    assert series.error_rate(rollups) == (0, sim.stats.requests)
    shapes = {s["endpoint"] for r in rollups for s in r.shapes.values()}
    assert "GET /odata/Property" in shapes
    assert {r.vendor for r in rollups} == {f"reso@{url.split('//')[1]}"}
    # one call in flight at a time: each /odata call took the simulator's latency
    p95 = series.p95(rollups)
    bucket = latency_bucket(LATENCY)
    assert p95 is not None
    assert LATENCY_EDGES[bucket - 1] < p95 <= LATENCY_EDGES[bucket]


async def gauges_match_the_store(hub: Hub, clock: FakeClock, report: SyncReport) -> None:
    gauges = await hub.sampler.sample(TENANT)
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        open_now = await uow.quarantine.open_counts()
        stored = await uow.credentials.get("mls-client")
        outbox = await uow.outbox.count_pending()
    assert stored is not None
    assert stored.expires_at is not None
    assert gauges[MLS]["quarantine_open"] == open_now[MLS] > 0
    assert gauges[FAULTED]["quarantine_open"] == 0
    expiry = (stored.expires_at - clock.now()).total_seconds()
    assert gauges[MLS]["token_expiry_seconds"] == pytest.approx(expiry)
    assert gauges[MLS]["credential_needs_reauth"] == 0.0
    assert gauges[MLS]["sync_lag_seconds"] == pytest.approx(
        (clock.now() - report.started).total_seconds()
    )  # caught up to the run's start: everything changed before it was read
    assert "sync_lag_seconds" not in gauges[FAULTED]  # never synced: no lag to tell
    assert gauges[""]["outbox_backlog"] == outbox > 0  # the relay does not run in this test
    value = hub.metrics.registry.get_sample_value
    assert value("cadastre_outbox_backlog", {"tenant": TENANT}) == outbox
    assert value("cadastre_token_expiry_seconds", {"connection": MLS}) == pytest.approx(expiry)
    latest = await minutes(hub)
    assert series.latest_gauge(latest, MLS, "quarantine_open") == open_now[MLS]


def faulted_run_observed(rollups: list[MinuteRollup], sim: ResoSimulator, ended: str) -> None:
    injected = sim.stats.faults_injected["error"]
    assert injected > 0
    assert series.counter(rollups, ended) == 1
    assert series.calls(rollups) == sim.stats.requests
    codes = series.statuses(rollups)
    assert sum(n for status, n in codes.items() if status != "200") == injected
    failed, total = series.error_rate(rollups)
    assert (failed, total) == (injected, sim.stats.requests)  # 5xx are retried: "retry"
    # the injected errors differ by request id and time, not by what they say: one
    # fingerprint per status, counted as often as that status was answered
    by_status: Counter[str] = Counter()
    fingerprints: dict[str, set[str]] = {}
    for rollup in rollups:
        for fp, entry in rollup.errors.items():
            by_status[entry["status"]] += entry["count"]
            fingerprints.setdefault(entry["status"], set()).add(fp)
            assert entry["sample"].startswith("{")
    assert by_status == {s: n for s, n in codes.items() if s != "200"}
    assert all(len(fps) == 1 for fps in fingerprints.values())
