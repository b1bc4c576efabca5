"""Containment (RELIABILITY.md #4): vendor B's latency while vendor A is down, against B's own
baseline measured in the same run with A healthy.

Two simulators, each in a process of its own; one hub's gateway controls; 64 concurrent callers,
32 calling A and 32 calling B. B's callers are paced at half of what B serves at most, so the
figures show what each call costs and not how a saturated simulator queues; each of A's callers
starts a call every 0.2 s (160 calls/s asked of A in all), or as soon as its last call ends if
that took longer, as a worker does: a hung call holds its caller.
Three phases: A healthy (the baseline), A answering 503 to every call, A hanging on every call,
each run ``--rounds`` times, interleaved, and reported as medians. For each phase: B's p50 and
p99, B's p99 against the baseline (target: within 20 %), and the most calls A ever had in flight
against its bulkhead cap.

    .venv/bin/python bench/containment.py [--calls 2000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

import httpx
import orjson

from cadastre.clock import SystemClock
from cadastre.errors import VendorError
from cadastre.gateway import Gateway, GatewayControls, GatewaySettings, VendorPolicy
from cadastre.simulators import spawn
from cadastre.testing.load import drive
from cadastre.testing.vault import VaultKit

LOOPBACK = ("127.0.0.0/8", "::1")
A_CAP = 8
A_GAP = 0.2  # each of A's 32 callers asks every 0.2 s: 160 calls/s asked of A in every phase
controls_clock = SystemClock()
PHASES = {"healthy": {}, "failing": {"error_rate": 1.0}, "hanging": {"hang_rate": 1.0}}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def gateway(
    controls: GatewayControls, url: str, vendor: str, settings: dict[str, Any]
) -> Gateway:
    credential = f"sim-{vendor}"
    guards = controls.guards(tenant="bench", connection=vendor, vendor=vendor,
                             settings=GatewaySettings.model_validate(settings),
                             credential=credential)  # fmt: skip
    policy = VendorPolicy(vendor=vendor, read=1.0, total=3.0, max_attempts=2)
    # the simulator's published demo login, in an in-memory vault
    auth = await VaultKit(controls_clock).client_credentials(
        "bench", credential, "demo-client", "demo-secret", token_url=f"{url}/oauth/token"
    )
    return Gateway(
        f"{url}/odata", policy, clock=controls_clock, auth=auth, guards=guards,
        allow_hosts=LOOPBACK,
    )  # fmt: skip


async def phase(a_url: str, b_url: str, faults: dict[str, Any], calls: int, rate: float | None
                ) -> dict[str, float]:  # fmt: skip
    """B's latencies with A under ``faults``; with ``rate`` None, B's top rate instead."""
    async with httpx.AsyncClient(base_url=a_url) as admin:
        await admin.post("/admin/faults", json={**faults, "paths": ["/odata"]})
        await admin.post("/admin/reset-stats")
        controls = GatewayControls(controls_clock)
        a_settings = {"bulkhead": {"max_concurrent": A_CAP, "max_wait": 0.5},
                      "breaker": {"minimum_calls": 10, "open_duration": 2.0}}  # fmt: skip
        async with await gateway(controls, a_url, "vendor-a", a_settings) as a, \
                await gateway(controls, b_url, "vendor-b", {}) as b:  # fmt: skip
            await b.get("Property", params={"$top": 1})  # B's token before the clock starts

            async def on_b() -> None:
                await b.get("Property", params={"$top": 1, "$select": "ListingKey"})

            async def on_a() -> None:
                with contextlib.suppress(VendorError):
                    await a.get("Property", params={"$top": 1})

            # 32 callers on A, each starting a call every A_GAP seconds (or when its last one
            # ends, if later) until B is done.
            pressure = asyncio.create_task(drive(on_a, callers=32, rate=32 / A_GAP, seconds=1e9))
            started = time.perf_counter()
            latencies = await drive(on_b, callers=32, rate=rate, calls=calls)
            elapsed = time.perf_counter() - started
            pressure.cancel()
            await asyncio.gather(pressure, return_exceptions=True)
        stats = (await admin.get("/admin/stats")).json()
        await admin.post("/admin/faults", json={})
    a_calls = controls.calls.of(vendor="vendor-a")
    return {
        "b_p50_ms": percentile(latencies, 0.50) * 1000,
        "b_p99_ms": percentile(latencies, 0.99) * 1000,
        "b_calls_per_second": calls / elapsed,
        "a_calls": len(a_calls),
        "a_refused_unsent": sum(c.outcome in {"CircuitOpen", "BulkheadFull"} for c in a_calls),
        "a_max_in_flight": stats["max_in_flight"],
    }


async def run(a_url: str, b_url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """Each phase ``rounds`` times, interleaved; the median of each figure over its rounds, so a
    noisy neighbour on the shared machine does not land on one phase only."""
    top = await phase(a_url, b_url, {}, calls, None)
    rate = top["b_calls_per_second"] / 2
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in PHASES}
    for _ in range(rounds):
        for name, faults in PHASES.items():
            seen[name].append(await phase(a_url, b_url, faults, calls, rate))
    results = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in seen.items()
    }
    for result in results.values():
        result["b_p99_vs_baseline"] = result["b_p99_ms"] / results["healthy"]["b_p99_ms"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls to B per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    with spawn("reso", "--records", "50", "--no-rate-limit") as a_url, \
            spawn("reso", "--records", "50", "--no-rate-limit") as b_url:  # fmt: skip
        results = asyncio.run(run(a_url, b_url, args.calls, args.rounds))
    print(f"{'A is':>8} {'B p50 ms':>9} {'B p99 ms':>9} {'p99/base':>9} {'A calls':>8} "
          f"{'A refused':>10} {'A in flight (cap ' + str(A_CAP) + ')':>22}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:>8} {r['b_p50_ms']:>9.3f} {r['b_p99_ms']:>9.3f} "
              f"{r['b_p99_vs_baseline']:>9.2f} {r['a_calls']:>8} {r['a_refused_unsent']:>10} "
              f"{r['a_max_in_flight']:>22}")  # fmt: skip
    if args.json:
        print(orjson.dumps({name: {k: round(v, 3) for k, v in r.items()}
                            for name, r in results.items()}).decode())  # fmt: skip


if __name__ == "__main__":
    main()
