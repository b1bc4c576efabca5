"""Item 4's behaviour-change detector, item 7's way: the RESO simulator changes how it behaves
without changing its schema - its error JSON, its paging key, its throttling - while the hub
keeps reading it; ``vendor_behaviour_change`` fires for each, naming what changed, and clears
when the vendor goes back. The error-rate rule runs beside it and stays quiet: none of these is
an error spike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cadastre.simulators import FaultProfile, ResoSimulator
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, fake_clock

from .harness import MLS, ODATA, Reads, Timeline, assert_names_everything, reso_world, shipped

WINDOW, BASELINE, FOR, CLEAR_FOR = 120, 240, 60, 60
RULES = (
    shipped("vendor_behaviour_change", for_=FOR, clear_for=CLEAR_FOR,
            params={"window": WINDOW, "baseline": BASELINE, "min_calls": 8, "min_count": 3}),
    shipped("vendor_error_rate", params={"window": WINDOW, "min_calls": 8}, for_=FOR,
            clear_for=CLEAR_FOR),
)  # fmt: skip
ROLLBACK = f"cadastre rollback connection {MLS} --tenant {TENANT} --to previous"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
def sim(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=20, seed=9, clock=clock, rate_limit=None)


async def change_and_restore(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator, usual: FaultProfile,
    changed: FaultProfile,
) -> tuple[dict[str, Any], list[int]]:  # fmt: skip
    """The vendor behaves as ``usual`` for a baseline, then as ``changed`` until the alert
    fires, then as ``usual`` again until it resolves: the raised event's data, and how many
    records each read got."""
    sim.faults = usual
    async with reso_world(tmp_path, clock, sim, *RULES) as hub:
        reads = Reads(hub)
        timeline = Timeline(hub, clock, "vendor_behaviour_change")
        await timeline.run(BASELINE + WINDOW, reads)  # a whole baseline of the usual
        assert timeline.made() == []

        sim.faults = changed
        fired = await timeline.until_firing(WINDOW + FOR + 120, reads)
        raised = await timeline.check_fired(fired, for_=FOR)
        assert_names_everything(raised, vendor=raised.data["vendor"], connection=MLS,
                                changed=[], rollback=ROLLBACK)  # fmt: skip

        sim.faults = usual
        recovered = clock.now()
        resolved = await timeline.until_resolved(WINDOW + CLEAR_FOR + 180, reads)
        await timeline.check_resolved(resolved, recovered=recovered, window=WINDOW,
                                      clear_for=CLEAR_FOR)  # fmt: skip
        timeline.check_one_alert()
        quiet = [a for _, a in timeline.transitions if a.rule == "vendor_error_rate"]
        assert quiet == []
        return raised.data, reads.read


async def test_a_vendor_switching_its_error_json(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    """Errors at the usual low rate, in RFC 9457 problem details instead of OData errors."""
    usual = FaultProfile(error_rate=0.1, paths=ODATA, seed=2)
    data, _ = await change_and_restore(
        tmp_path, clock, sim, usual, FaultProfile(error_rate=0.1, paths=ODATA, seed=2,
                                                  error_format="problem"),
    )  # fmt: skip
    changed = str(data["changed"])
    assert changed.startswith("new error form(s) over the last 2 min, not seen the 4 min before")
    assert "about:blank" in changed  # the sample of the new form
    assert "status mix" not in changed  # the same statuses, in a new dress
    assert "new response shape" not in changed


async def test_a_vendor_renaming_its_paging_key(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    """``@odata.nextLink`` becomes ``odata.nextLink``: the hub's reads still succeed but stop
    after one page - nothing fails, the records just stop coming. Only the shape says so."""
    renamed = FaultProfile(paths=("/odata/Property",),
                           envelope_rename={"@odata.nextLink": "odata.nextLink"})  # type: ignore[arg-type]  # fmt: skip
    data, read = await change_and_restore(tmp_path, clock, sim, FaultProfile(), renamed)
    changed = str(data["changed"])
    assert changed.startswith("new response shape(s) over the last 2 min, not seen the 4 min")
    assert "GET /odata/Property" in changed
    assert "+odata.nextLink" in changed
    assert "error form" not in changed
    assert read[0] == 20  # the whole stream, while the vendor paged as it used to
    assert 2 in read  # one page of two records, and no error anywhere


async def test_a_vendor_throttling_much_more_than_it_used_to(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator
) -> None:
    """From a 429 now and then to half the calls answered 429 (with Retry-After): the hub waits
    and retries, so nothing fails, and 429s are not errors; the status mix moved."""
    usual = FaultProfile(throttle_rate=0.05, retry_after=1, paths=ODATA, seed=4)
    throttled = FaultProfile(throttle_rate=0.5, retry_after=1, paths=ODATA, seed=4)
    data, read = await change_and_restore(tmp_path, clock, sim, usual, throttled)
    changed = str(data["changed"])
    assert changed.startswith("status mix moved")
    assert "429 x" in changed
    assert "error form" not in changed  # the vendor's 429s look as they always did
    assert data["facts"]["distance"] >= 0.3
    assert set(read) == {20}  # every read got everything
