"""Item 7 for the detectors that watch vendor calls: the RESO simulator's fault profile forces an
error-rate spike and a latency drift while the hub keeps reading it; each alert fires within its
window, says what changed and what to do, and clears once the vendor recovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.simulators import FaultProfile, ResoSimulator
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, fake_clock

from .harness import MLS, ODATA, Reads, Timeline, assert_names_everything, reso_world, shipped

ROLLBACK = f"cadastre rollback connection {MLS} --tenant {TENANT} --to previous"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
def sim(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=10, seed=5, clock=clock, rate_limit=None)


async def test_an_error_rate_spike_fires_and_clears(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    window, for_, clear_for = 120, 60, 60  # the shipped rule's texts at shorter times
    rule = shipped("vendor_error_rate", params={"window": window, "min_calls": 8}, for_=for_,
                   clear_for=clear_for)  # fmt: skip
    async with reso_world(tmp_path, clock, sim, rule) as hub:
        reads = Reads(hub)
        timeline = Timeline(hub, clock, "vendor_error_rate")
        await timeline.run(180, reads)  # three healthy minutes
        assert timeline.made() == []

        sim.faults = FaultProfile(error_rate=0.6, paths=ODATA, seed=3)
        fired = await timeline.until_firing(window + for_ + 120, reads)
        raised = await timeline.check_fired(fired, for_=for_)
        assert_names_everything(
            raised, vendor=raised.data["vendor"], connection=MLS, rollback=ROLLBACK,
            changed=["error rate", "over the last 2 min", "at or above the 25% threshold"],
        )  # fmt: skip
        assert raised.data["vendor"]
        assert raised.data["severity"] == "critical"
        assert raised.data["facts"]["rate"] >= 0.25
        assert set(raised.data["facts"]["statuses"]) <= {"500", "502", "503"}

        sim.faults = FaultProfile()
        recovered = clock.now()
        resolved = await timeline.until_resolved(window + clear_for + 180, reads)
        await timeline.check_resolved(resolved, recovered=recovered, window=window,
                                      clear_for=clear_for)  # fmt: skip
        timeline.check_one_alert()


async def test_a_latency_drift_against_the_vendors_own_baseline_fires_and_clears(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    window, baseline, for_, clear_for = 120, 180, 60, 60
    rule = shipped(
        "vendor_latency_drift",
        params={"window": window, "baseline": baseline, "min_calls": 8}, for_=for_,
        clear_for=clear_for,
    )  # fmt: skip
    usual = FaultProfile(latency=0.2, latency_distribution="lognormal", latency_p99=0.4,
                         paths=ODATA, seed=1)  # fmt: skip
    slow = FaultProfile(latency=1.5, latency_distribution="lognormal", latency_p99=3.0,
                        paths=ODATA, seed=1)  # fmt: skip
    sim.faults = usual
    async with reso_world(tmp_path, clock, sim, rule) as hub:
        reads = Reads(hub)
        timeline = Timeline(hub, clock, "vendor_latency_drift")
        await timeline.run(baseline + window, reads)  # the vendor's own pace: its baseline
        assert timeline.made() == []

        sim.faults = slow
        fired = await timeline.until_firing(window + for_ + 120, reads)
        raised = await timeline.check_fired(fired, for_=for_)
        facts = raised.data["facts"]
        assert facts["value"] >= 2 * facts["baseline"]
        assert facts["value"] >= facts["baseline"] + 0.5
        assert_names_everything(
            raised, vendor=raised.data["vendor"], connection=MLS, rollback=ROLLBACK,
            changed=["p95", "over the last 2 min", "its baseline", "(the 3 min before)"],
        )  # fmt: skip

        sim.faults = usual
        recovered = clock.now()
        resolved = await timeline.until_resolved(window + clear_for + 180, reads)
        await timeline.check_resolved(resolved, recovered=recovered, window=window,
                                      clear_for=clear_for)  # fmt: skip
        timeline.check_one_alert()
