"""The retry schedule: Svix's published steps, jitter within 10 % of each, Retry-After honoured
but never shortening a wait and capped, and nothing after the last step."""

from __future__ import annotations

import math
import random
from statistics import mean

import pytest

from cadastre.webhooks.schedule import SVIX_WAITS, RetrySchedule


def test_the_steps_are_svix_s() -> None:
    hours = 3600.0
    published = (0.0, 5.0, 5 * 60.0, 30 * 60.0, 2 * hours, 5 * hours, 10 * hours, 10 * hours)
    assert published == SVIX_WAITS
    schedule = RetrySchedule()
    assert schedule.attempts == 8
    assert schedule.bounds(1) == (0, 0)  # the first attempt is immediate
    assert schedule.bounds(2) == pytest.approx((4.5, 5.5))
    assert schedule.bounds(8) == pytest.approx((32_400, 39_600))


def test_waits_stay_within_their_jitter_and_spread_across_it() -> None:
    schedule, rng = RetrySchedule(), random.Random(3)
    for failed in range(1, 8):
        low, high = schedule.bounds(failed + 1)
        waits = [schedule.wait_after(failed, rng) for _ in range(2000)]
        assert all(w is not None and low <= w <= high for w in waits)
        drawn = [w for w in waits if w is not None]
        step = SVIX_WAITS[failed]
        assert mean(drawn) == pytest.approx(step, rel=0.01)  # centred on the step
        # spread: each tenth of the jitter range gets its share (no spike, no hole)
        buckets = [0] * 10
        for w in drawn:
            buckets[min(9, int((w - low) / (high - low) * 10))] += 1
        assert min(buckets) > 120
        assert max(buckets) < 280


def test_nothing_after_the_last_step() -> None:
    schedule = RetrySchedule()
    assert schedule.wait_after(8, random.Random(1)) is None
    assert schedule.wait_after(9, random.Random(1)) is None
    with pytest.raises(ValueError, match="from 1"):
        schedule.wait_after(0, random.Random(1))


def test_retry_after_lengthens_never_shortens_and_is_capped() -> None:
    schedule = RetrySchedule()
    assert schedule.wait_after(1, random.Random(1), retry_after=120) == 120
    shorter = schedule.wait_after(2, random.Random(1), retry_after=1)
    assert shorter is not None
    assert 270 <= shorter <= 330  # the 5-minute step, not 1 s
    assert schedule.wait_after(1, random.Random(1), retry_after=10**9) == 86_400
    nan = schedule.wait_after(1, random.Random(1), retry_after=math.nan)
    assert nan is not None
    assert 4.5 <= nan <= 5.5
    assert schedule.wait_after(8, random.Random(1), retry_after=5) is None  # dead all the same


@pytest.mark.parametrize(
    "kwargs",
    [{"waits": ()}, {"waits": (0, -1)}, {"waits": (0, math.inf)}, {"jitter": 1.0},
     {"jitter": -0.1}, {"retry_after_cap": -1}],
)  # fmt: skip
def test_a_schedule_that_makes_no_sense_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"wait|jitter|seconds"):
        RetrySchedule(**kwargs)  # type: ignore[arg-type]
