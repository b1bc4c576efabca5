"""Item 7 for what the hub's syncs show: schema drift (the RESO simulator's dialect changed while
it runs, the drift admin of ``test_drift.py``) and a growing sync lag (the MLS failing every
call, so no sync succeeds). Each alert fires within its window, says what changed and what to
do, and clears after recovery."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cadastre.simulators import FaultProfile, ResoSimulator
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, fake_clock

from .harness import MLS, ODATA, Syncs, Timeline, assert_names_everything, reso_world, shipped


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
def sim(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=10, seed=3, clock=clock, rate_limit=None)


async def test_schema_drift_fires_at_once_and_clears_when_the_event_ages_out(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    """The default rules file as shipped: ``schema_drift`` fires at once (``for: 0``), holds
    while the drift event is within its hour, and resolves ``clear_for`` after that."""
    async with reso_world(tmp_path, clock, sim, page_size=10) as hub:
        rule = hub.alerts.rules.get("schema_drift")
        assert rule is not None
        window, for_, clear_for = rule.params["window"], rule.for_, rule.clear_for
        syncs = Syncs(hub, sim, every=1)
        timeline = Timeline(hub, clock, "schema_drift")
        await timeline.run(90, syncs)  # the first sync takes the snapshot; the others match it
        assert timeline.made() == []

        sim.add_field("ACT_GreenCertified", "Edm.Boolean", True)
        sim.retype_field("ACT_Waterfront", "Edm.String")
        changed_at = clock.now()
        fired = await timeline.until_firing(for_ + timeline.interval, syncs)
        raised = await timeline.check_fired(fired, for_=for_)
        assert_names_everything(
            raised, vendor=raised.data["vendor"], connection=MLS,
            changed=["Property schema changed", "added ACT_GreenCertified (Edm.Boolean)",
                     "retyped ACT_Waterfront Edm.Boolean -> Edm.String"],
            rollback="cadastre rollback mapping test-mls --to previous --resync",
        )  # fmt: skip
        assert raised.data["key"] == f"{MLS}/Property"
        assert datetime.fromisoformat(raised.data["since"]) >= changed_at  # the drift event's
        assert "mappings check test-mls" in raised.data["action"]

        # Nothing changes while the event is within the window: on to its last minute.
        since = datetime.fromisoformat(raised.data["since"])
        await timeline.skip_to(since + timedelta(seconds=window - 60))
        resolved = await timeline.until_resolved(clear_for + 4 * timeline.interval)
        await timeline.check_resolved(resolved, recovered=changed_at, window=window,
                                      clear_for=clear_for)  # fmt: skip
        timeline.check_one_alert()


async def test_a_growing_sync_lag_fires_and_clears_once_syncs_succeed(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    window, threshold, for_, clear_for = 300, 180, 60, 60
    rule = shipped("sync_lag_growing", params={"window": window, "threshold": threshold},
                   for_=for_, clear_for=clear_for)  # fmt: skip
    async with reso_world(tmp_path, clock, sim, rule, page_size=10) as hub:
        syncs = Syncs(hub, sim)
        timeline = Timeline(hub, clock, "sync_lag_growing")
        await timeline.run(180, syncs)  # syncing every minute: the lag stays under a minute
        assert timeline.made() == []

        sim.faults = FaultProfile(error_rate=1.0, paths=ODATA)
        down = clock.now()
        fired = await timeline.until_firing(threshold + window + for_, syncs)
        raised = await timeline.check_fired(fired, for_=for_)
        assert_names_everything(
            raised, vendor=raised.data["vendor"], connection=MLS,
            changed=["sync_lag_seconds", "over the last 5 min", "at or above the 180 s threshold"],
            rollback=f"cadastre rollback connection {MLS} --tenant {TENANT} --to previous",
        )  # fmt: skip
        assert raised.data["facts"]["value"] >= threshold
        assert syncs.failed > 0
        assert fired - down <= timedelta(seconds=threshold + 2 * 60 + for_ + timeline.interval)

        sim.faults = FaultProfile()
        recovered = clock.now()
        resolved = await timeline.until_resolved(clear_for + 180, syncs)
        await timeline.check_resolved(resolved, recovered=recovered, window=window,
                                      clear_for=clear_for)  # fmt: skip
        timeline.check_one_alert()
