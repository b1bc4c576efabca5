"""Several rate-limit windows at once (per second, a per-minute burst, per hour, per day), each
counted on the simulator clock."""

from __future__ import annotations

import httpx
import pytest

from cadastre.simulators import RateLimit, ResoSimulator
from cadastre.simulators.ratelimit import RateLimiter
from cadastre.testing import FakeClock

from .conftest import bearer, client_for


def test_windows_are_kept_flat_and_read_from_json() -> None:
    limit = RateLimit(2, 1.0, also=({"requests": 10, "per": 60}, RateLimit(40, 3600)))  # type: ignore[arg-type]
    assert [(w.requests, w.per) for w in limit.windows] == [(2, 1.0), (10, 60), (40, 3600)]
    nested = RateLimit(1, 1.0, also=(RateLimit(5, 10, also=(RateLimit(9, 100),)),))
    assert [w.requests for w in nested.windows] == [1, 5, 9]


@pytest.mark.parametrize("also", [RateLimit(3), [{"requests": 0, "per": 1}], ["x"], "abc"])
def test_bad_windows_are_refused(also: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        RateLimit(2, also=also)  # type: ignore[arg-type]


def test_a_request_is_admitted_only_when_every_window_has_room() -> None:
    limiter = RateLimiter(RateLimit(2, 1.0, also=(RateLimit(5, 60),)))
    now = 0.0
    admitted = 0
    for _ in range(20):  # one request every 0.5 s: the per-second window always has room
        admitted += limiter.admit(now).admitted
        now += 0.5
    assert admitted == 5  # the minute window ran out first
    refused = limiter.admit(now)
    assert not refused.admitted
    assert refused.retry_after == 60 - 10  # the first of the five frees at t=60
    assert limiter.admit(60.0).admitted


def test_a_refused_request_uses_no_slot_in_any_window() -> None:
    limiter = RateLimiter(RateLimit(1, 1.0, also=(RateLimit(3, 100),)))
    assert limiter.admit(0.0).admitted
    for _ in range(50):
        assert not limiter.admit(0.5).admitted  # the second window is not charged for these
    assert limiter.admit(1.0).admitted
    assert limiter.admit(2.0).admitted
    assert limiter.remaining(2.5) == 0
    assert not limiter.admit(3.0).admitted


def test_retry_after_waits_for_the_slowest_full_window() -> None:
    limiter = RateLimiter(RateLimit(1, 1.0, also=(RateLimit(2, 3600),)))
    assert limiter.admit(0.0).admitted
    assert limiter.admit(1.0).admitted
    refused = limiter.admit(1.0)  # both windows are full; the hour frees last
    assert refused.retry_after == 3599


def test_trestle_style_burst_then_hour() -> None:
    limiter = RateLimiter(RateLimit(180, 60.0, also=(RateLimit(7200, 3600.0),)))
    for minute in range(40):  # a full burst at the start of each minute
        now = 60.0 * minute
        assert all(limiter.admit(now).admitted for _ in range(180))
        assert not limiter.admit(now).admitted  # the burst is spent
    refused = limiter.admit(2400.0)  # the minute has room again, the hour does not
    assert not refused.admitted
    assert refused.retry_after == 3600 - 2400
    assert limiter.remaining(2400.0) == 0
    assert limiter.admit(3600.0).admitted


async def test_mlsgrid_counts_its_second_hour_and_day_windows(clock: FakeClock) -> None:
    sim = ResoSimulator(records=5, clock=clock, dialect="mlsgrid")
    assert sim.rate_limit is not None
    windows = [(w.requests, w.per) for w in sim.rate_limit.windows]
    assert windows == [(2, 1.0), (7200, 3600.0), (40000, 86400.0)]
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        statuses = [(await client.get("/odata/Property")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # 2 a second
        assert sim.stats.rate_limit_violations == 1


async def test_every_window_is_counted_over_http(clock: FakeClock) -> None:
    limit = RateLimit(2, 1.0, also=(RateLimit(5, 60.0),))
    sim = ResoSimulator(records=5, clock=clock, rate_limit=limit, rate_limit_headers="ietf")
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        statuses = []
        for _ in range(4):  # two a second for four seconds: the minute's five run out
            statuses += [(await client.get("/odata/Property")).status_code for _ in range(2)]
            clock.advance(1.0)
        assert statuses == [200, 200, 200, 200, 200, 429, 429, 429]
        refused = await client.get("/odata/Property")
        assert refused.status_code == 429
        assert refused.headers["RateLimit-Limit"] == "5"  # the window that refused
        assert refused.headers["Retry-After"] == "56"  # the first of the five frees at t=60
        assert sim.stats.rate_limit_violations == 4
        clock.advance(56.0)
        assert (await client.get("/odata/Property")).status_code == 200


async def test_the_dialect_rate_limit_can_be_replaced_and_read_over_admin(
    clock: FakeClock,
) -> None:
    sim = ResoSimulator(records=5, clock=clock, dialect="trestle")
    assert sim.rate_limit is not None
    assert [(w.requests, w.per) for w in sim.rate_limit.windows] == [(180, 60), (7200, 3600)]
    async with client_for(sim) as client:
        shown = (await client.get("/admin/rate-limit")).json()
        assert shown["also"] == [{"requests": 7200, "per": 3600.0, "window": "sliding", "also": []}]
        posted = await client.post(
            "/admin/rate-limit",
            json={"requests": 1, "per": 1, "also": [{"requests": 2, "per": 10}]},
        )
        assert posted.status_code == 200, posted.text
        client.headers.update(await bearer(client))
        codes = []
        for _ in range(4):
            codes.append((await client.get("/odata/Property")).status_code)
            clock.advance(1.0)
        assert codes == [200, 200, 429, 429]
        bad = await client.post("/admin/rate-limit", json={"requests": 1, "also": [{"x": 1}]})
        assert bad.status_code == 400
        assert sim.rate_limit.windows[1].requests == 2  # the refused setting changed nothing


async def test_no_rate_limit_means_none_whatever_the_dialect(clock: FakeClock) -> None:
    sim = ResoSimulator(records=5, clock=clock, dialect="mlsgrid", rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        responses = [await client.get("/odata/Property") for _ in range(10)]
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in responses)


@pytest.mark.parametrize(("first", "seen", "per"), [(76.2, 76.3, 60.0), (7.7, 7.9, 1.0)])
def test_a_request_at_the_windows_edge_is_admitted_despite_float_rounding(
    first: float, seen: float, per: float
) -> None:
    # A client admitted at `first` waits out the window from `seen` on the same clock; its
    # arrival is the edge, even where `arrival - per` rounds below `first`.
    limiter = RateLimiter(RateLimit(1, per))
    assert limiter.admit(first).admitted
    arrival = seen + ((first + per) - seen)
    assert arrival - per < first  # the rounding this test is about
    assert limiter.admit(arrival).admitted
    assert not limiter.admit(arrival).admitted  # and the window is full again
