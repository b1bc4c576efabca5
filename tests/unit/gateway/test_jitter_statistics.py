"""RELIABILITY.md #8, statistically: 1,000 clients failing together spread their retries evenly
over [0, min(cap, base * 2**n)] (a Kolmogorov-Smirnov test against the uniform distribution),
with no spike in any 100 ms bucket."""

from __future__ import annotations

import math
import random

import httpx

from cadastre.gateway.policy import VendorPolicy
from cadastre.gateway.retry import backoff_ceiling

from .test_retry import Vendor, retrying, send

CLIENTS = 1000
POLICY = {"max_attempts": 5, "total": 10_000, "backoff_base": 0.5, "backoff_cap": 30.0}


def ks_distance(samples: list[float], ceiling: float) -> float:
    """The largest gap between the samples' empirical CDF and uniform [0, ceiling]."""
    ordered = sorted(samples)
    n = len(ordered)
    return max(max((i + 1) / n - x / ceiling, x / ceiling - i / n) for i, x in enumerate(ordered))


async def test_a_thousand_clients_failing_together_retry_uniformly_without_spikes(clock) -> None:
    master = random.Random(2026)
    waits: list[list[float]] = [[] for _ in range(4)]  # before retry n, one per client
    for _ in range(CLIENTS):
        clock.sleeps.clear()
        vendor = Vendor(clock, httpx.Response(503))
        await send(retrying(vendor, clock, rng=random.Random(master.random()), **POLICY))
        for n, slept in enumerate(clock.sleeps):
            waits[n].append(slept)
    policy = VendorPolicy(vendor="demo", backoff_base=0.5, backoff_cap=30.0)
    critical = 1.63 / math.sqrt(CLIENTS)  # KS at the 1 % level
    for n, samples in enumerate(waits):
        ceiling = backoff_ceiling(policy, n)
        assert len(samples) == CLIENTS
        assert all(0.0 <= s <= ceiling for s in samples)
        assert ks_distance(samples, ceiling) < critical, n
    # the widest window, 4 s: 40 buckets of 100 ms expect 25 retries each
    buckets = [0] * 40
    for s in waits[3]:
        buckets[min(39, int(s / 0.1))] += 1
    assert max(buckets) <= 50, buckets


def test_the_statistic_can_tell_a_spike_from_a_spread() -> None:
    spread = [i / CLIENTS * 4.0 for i in range(CLIENTS)]
    spiked = [0.05] * 300 + spread[300:]
    assert ks_distance(spread, 4.0) < 1.63 / math.sqrt(CLIENTS)
    assert ks_distance(spiked, 4.0) > 1.63 / math.sqrt(CLIENTS)
