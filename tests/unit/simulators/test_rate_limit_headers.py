"""Rate-limit response headers: X-RateLimit-* or the IETF draft's RateLimit-*, counted after the
request's own admission, on every answer of a rate-limited path (429s included)."""

from __future__ import annotations

import httpx
import pytest

from cadastre.simulators import FaultProfile, RateLimit, ResoSimulator
from cadastre.simulators.ratelimit import RateLimiter
from cadastre.testing import FakeClock

from .conftest import bearer, client_for

X_NAMES = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
IETF_NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def budget(response: httpx.Response, names: tuple[str, ...] = X_NAMES) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in names)
    return limit, remaining, reset


def test_sliding_remaining_and_reset_in() -> None:
    limiter = RateLimiter(RateLimit(requests=3, per=10.0))
    assert (limiter.remaining(0.0), limiter.reset_in(0.0)) == (3, 0.0)
    limiter.admit(1.0)
    assert (limiter.remaining(1.0), limiter.reset_in(1.0)) == (2, 10.0)
    limiter.admit(4.0)
    limiter.admit(6.0)
    assert (limiter.remaining(6.5), limiter.reset_in(6.5)) == (0, 4.5)  # 1.0 frees at 11.0
    assert (limiter.remaining(11.0), limiter.reset_in(11.0)) == (1, 3.0)  # 4.0 frees at 14.0
    assert limiter.remaining(16.0) == 3


def test_fixed_remaining_and_reset_in() -> None:
    limiter = RateLimiter(RateLimit(requests=2, per=10.0, window="fixed"))
    limiter.admit(12.0)
    assert (limiter.remaining(13.0), limiter.reset_in(13.0)) == (1, 7.0)
    limiter.admit(19.0)
    assert (limiter.remaining(19.5), limiter.reset_in(19.5)) == (0, 0.5)
    assert (limiter.remaining(20.0), limiter.reset_in(20.0)) == (2, 0.0)  # a new window


def test_header_values_round_reset_up_and_ignore_float_noise() -> None:
    limiter = RateLimiter(RateLimit(requests=2, per=10.0))
    limiter.admit(0.1 + 0.2)  # 0.30000000000000004
    assert limiter.headers("x-ratelimit", 4.3) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "6",  # 6.000000000000001 is not 7
    }
    assert limiter.headers("ietf", 4.4)["RateLimit-Reset"] == "6"  # 5.9 rounds up


async def test_x_ratelimit_headers_count_this_request(clock: FakeClock) -> None:
    sim = ResoSimulator(
        records=2, clock=clock, rate_limit=RateLimit(3, per=10), rate_limit_headers="x-ratelimit"
    )
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        first = await client.get("/odata/Property")
        assert budget(first) == (3, 2, 10)
        clock.advance(4.0)
        assert budget(await client.get("/odata/Property('ACT00000001')")) == (3, 1, 6)
        clock.advance(0.5)
        assert budget(await client.get("/odata/$metadata")) == (3, 0, 6)  # ceil(5.5)
        clock.advance(0.5)
        refused = await client.get("/odata/Property")
        assert refused.status_code == 429
        assert budget(refused) == (3, 0, 5)
        assert refused.headers["retry-after"] == "5"
        clock.advance(5.0)  # the first request leaves the window
        assert budget(await client.get("/odata/")) == (3, 0, 4)  # took the freed slot
        token = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("demo-client", "demo-secret"),
        )
        assert "x-ratelimit-limit" not in token.headers  # /oauth is outside the vendor limit
        assert "x-ratelimit-limit" not in (await client.get("/admin/stats")).headers


async def test_ietf_headers_also_on_faulted_answers(clock: FakeClock) -> None:
    sim = ResoSimulator(
        records=1, clock=clock, rate_limit=RateLimit(5, per=1), rate_limit_headers="ietf"
    )
    async with client_for(sim) as client:
        sim.faults = FaultProfile(error_rate=1.0)
        response = await client.get("/odata/")
        assert response.status_code >= 500
        assert budget(response, IETF_NAMES) == (5, 4, 1)
        assert "x-ratelimit-limit" not in response.headers


async def test_no_headers_unless_asked_or_without_a_limit(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=RateLimit(5, per=1))
    async with client_for(sim) as client:
        plain = await client.get("/odata/")
        assert not any(
            name.lower().startswith(("x-ratelimit", "ratelimit")) for name in plain.headers
        )
        sim.rate_limit_headers = "x-ratelimit"
        sim.rate_limit = None
        assert "x-ratelimit-limit" not in (await client.get("/odata/")).headers


async def test_headers_switched_over_admin(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        body = {"requests": 4, "per": 2, "headers": "ietf"}
        response = await client.post("/admin/rate-limit", json=body)
        assert response.json() == {
            "requests": 4,
            "per": 2,
            "window": "sliding",
            "also": [],
            "headers": "ietf",
        }
        assert budget(await client.get("/odata/"), IETF_NAMES) == (4, 3, 2)
        # Leaving "headers" out keeps the style; a bad one changes nothing at all.
        kept = await client.post("/admin/rate-limit", json={"requests": 9})
        assert kept.json()["headers"] == "ietf"
        refused = await client.post("/admin/rate-limit", json={"requests": 2, "headers": "rfc"})
        assert refused.status_code == 400
        assert "x-ratelimit or ietf" in refused.json()["error"]["message"]
        assert (await client.get("/admin/rate-limit")).json()["requests"] == 9
        off = await client.post("/admin/rate-limit", json={"requests": 9, "headers": None})
        assert off.json()["headers"] is None
        assert "ratelimit-limit" not in (await client.get("/odata/")).headers
    assert sim.rate_limit_headers is None


def test_the_constructor_refuses_an_unknown_style() -> None:
    with pytest.raises(ValueError, match="x-ratelimit or ietf"):
        ResoSimulator(records=1, rate_limit_headers="github")  # type: ignore[arg-type]
