"""Gateway overhead: what the whole call pipeline (retry, breaker, bulkhead, rate limiter, auth,
metering, call records, a trace span) adds to each vendor call, against plain httpx calling the
same simulator in the same run, at 1 and at 64 concurrent callers; then a throttled run that
asks three times what the simulator allows and reads back how many requests broke its window.

The simulator runs in its own process with its rate limit off for the latency rounds, so it is
not what differs between the two clients. Rounds of plain and gateway calls alternate, and the
figures are the medians of the per-round percentiles, which keeps a noisy neighbour on the
shared machine from landing on one side only.

    overhead_p50_ms = p50(gateway) - p50(plain httpx)     at 64 callers (target < 1 ms)
    overhead_p99_ms = p99(gateway) - p99(plain httpx)     at 64 callers (target < 5 ms)
    violations      = requests over the simulator's window during the throttled run (target 0)

    .venv/bin/python bench/gateway.py [--calls 2000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import orjson

from cadastre.clock import SystemClock
from cadastre.gateway import (
    Gateway,
    GatewayControls,
    GatewaySettings,
    MemoryRateLimitBackend,
    VendorPolicy,
)
from cadastre.observe import Metrics
from cadastre.simulators import spawn
from cadastre.testing.load import drive
from cadastre.testing.vault import VaultKit

CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the simulator's published demo login
PATH, PARAMS = "Property", {"$top": "1", "$select": "ListingKey"}
LOOPBACK = ("127.0.0.0/8", "::1")
LIMIT = 30  # requests per second in the throttled run (the simulator's sliding window)
controls_clock = SystemClock()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def gateway_for(
    base: str, controls: GatewayControls, metrics: Metrics, rate: int | None
) -> Gateway:
    gateway: dict[str, Any] = {"bulkhead": {"max_concurrent": 128}}
    if rate is not None:
        gateway["rate_limit"] = {"requests": rate, "per": 1.0}
    else:  # every layer in place, the bucket far above what the run can ask
        gateway["rate_limit"] = {"requests": 1_000_000, "per": 1.0}
    settings = GatewaySettings.model_validate(gateway)
    guards = controls.guards(tenant="bench", connection="bench", vendor="reso-sim",
                             settings=settings, credential="bench")  # fmt: skip
    auth = await VaultKit(controls_clock).client_credentials(
        "bench", "bench", CLIENT_ID, CLIENT_SECRET, token_url=f"{base}/oauth/token"
    )
    return Gateway(
        f"{base}/odata", VendorPolicy(vendor="reso-sim", total=30.0), clock=controls_clock,
        auth=auth, metrics=metrics, connection="bench", guards=guards, allow_hosts=LOOPBACK,
    )  # fmt: skip


async def latency(
    base: str, calls: int, rounds: int, callers: int, load: float
) -> dict[str, float]:
    """Percentiles of both clients; at 64 callers, the calls are paced at ``load`` of what plain
    httpx can get through at most, so the figures show what each call costs rather than how a
    saturated simulator queues them."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=f"{base}/odata", limits=limits) as plain:
        grant = {"grant_type": "client_credentials"}
        answer = await plain.post(
            f"{base}/oauth/token", data=grant, auth=(CLIENT_ID, CLIENT_SECRET)
        )
        token = answer.json()["access_token"]
        plain.headers["Authorization"] = f"Bearer {token}"
        metrics = Metrics()
        controls = GatewayControls(controls_clock, backend=MemoryRateLimitBackend(controls_clock),
                                   metrics=metrics)  # fmt: skip
        async with await gateway_for(base, controls, metrics, rate=None) as gw:

            async def plain_call() -> None:
                (await plain.get(PATH, params=PARAMS)).raise_for_status()

            async def gateway_call() -> None:
                await gw.get(PATH, params=PARAMS)

            await drive(plain_call, callers=callers, calls=200)  # warm both pools and the token
            await drive(gateway_call, callers=callers, calls=200)
            rate = None
            if callers > 1:
                started = time.perf_counter()
                await drive(plain_call, callers=callers, calls=calls)
                capacity = calls / (time.perf_counter() - started)
                rate = load * capacity
            names = ("p50_plain", "p99_plain", "p50_gateway", "p99_gateway", "p50_pipeline",
                     "p99_pipeline")  # fmt: skip
            figures: dict[str, list[float]] = {name: [] for name in names}
            clients = [("plain", plain_call), ("gateway", gateway_call)]
            for n in range(rounds):
                for name, call in clients if n % 2 == 0 else clients[::-1]:
                    controls.calls.clear()
                    lat = await drive(call, callers=callers, rate=rate, calls=calls)
                    figures[f"p50_{name}"].append(percentile(lat, 0.50) * 1000)
                    figures[f"p99_{name}"].append(percentile(lat, 0.99) * 1000)
                    if name == "gateway":
                        # Time inside the pipeline itself, every layer but the HTTP exchange
                        # (the body read included): a figure the simulator's noise cannot move.
                        own = [r.seconds - r.vendor_seconds - r.rate_wait - r.bulkhead_wait
                               for r in controls.calls]  # fmt: skip
                        figures["p50_pipeline"].append(percentile(own, 0.50) * 1000)
                        figures["p99_pipeline"].append(percentile(own, 0.99) * 1000)
        await controls.aclose()
    result = {k: statistics.median(v) for k, v in figures.items()}
    result["calls_per_second"] = rate or 0.0
    result["overhead_p50_ms"] = result["p50_gateway"] - result["p50_plain"]
    result["overhead_p99_ms"] = result["p99_gateway"] - result["p99_plain"]
    return result


async def throttled(base: str, seconds: float) -> dict[str, float]:
    """64 callers asking three times the simulator's limit for ``seconds``."""
    async with httpx.AsyncClient(base_url=base) as admin:
        await admin.post("/admin/rate-limit", json={"requests": LIMIT, "per": 1.0})
        await admin.post("/admin/reset-stats")
        metrics = Metrics()
        controls = GatewayControls(controls_clock, backend=MemoryRateLimitBackend(controls_clock),
                                   metrics=metrics)  # fmt: skip
        sent = refused = 0
        async with await gateway_for(base, controls, metrics, rate=LIMIT) as gw:

            async def call() -> None:
                nonlocal sent, refused
                try:
                    await gw.get(PATH, params=PARAMS)
                    sent += 1
                except Exception:  # noqa: BLE001 - a refused or failed call is counted
                    refused += 1

            await drive(call, callers=64, rate=3 * LIMIT, seconds=seconds)
        await controls.aclose()
        stats = (await admin.get("/admin/stats")).json()
        await admin.post("/admin/rate-limit", json=None)
    return {"sent": sent, "refused": refused, "violations": stats["rate_limit_violations"],
            "asked_per_second": 3 * LIMIT, "allowed_per_second": LIMIT}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--throttled-seconds", type=float, default=10.0)
    parser.add_argument(
        "--load",
        type=float,
        default=0.5,
        help="share of plain httpx's top rate the 64 callers ask for",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    with spawn("reso", "--records", "200", "--no-rate-limit") as base:
        one = asyncio.run(latency(base, args.calls // 4, args.rounds, 1, args.load))
        many = asyncio.run(latency(base, args.calls, args.rounds, 64, args.load))
        throttle = asyncio.run(throttled(base, args.throttled_seconds))
    print(f"{'callers':>8} {'plain p50':>10} {'gateway p50':>12} {'overhead':>9}   "
          f"{'plain p99':>10} {'gateway p99':>12} {'overhead':>9}  (ms)")  # fmt: skip
    for callers, r in ((1, one), (64, many)):
        print(f"{callers:>8} {r['p50_plain']:>10.3f} {r['p50_gateway']:>12.3f} "
              f"{r['overhead_p50_ms']:>9.3f}   {r['p99_plain']:>10.3f} {r['p99_gateway']:>12.3f} "
              f"{r['overhead_p99_ms']:>9.3f}")  # fmt: skip
    for callers, r in ((1, one), (64, many)):
        print(
            f"time inside the pipeline itself at {callers} callers: "
            f"p50 {r['p50_pipeline']:.3f} ms, p99 {r['p99_pipeline']:.3f} ms"
        )
    print(
        f"64 callers paced at {many['calls_per_second']:.0f} calls/s "
        f"({args.load:.0%} of plain httpx's top rate on this simulator)"
    )
    print(f"throttled: asked {throttle['asked_per_second']}/s of a {LIMIT}/s window for "
          f"{args.throttled_seconds:g} s: sent {throttle['sent']}, refused at the deadline "
          f"{throttle['refused']}, violations {throttle['violations']}")  # fmt: skip
    if args.json:
        print(orjson.dumps({
            "overhead_p50_ms": round(many["overhead_p50_ms"], 3),
            "overhead_p99_ms": round(many["overhead_p99_ms"], 3),
            "violations": throttle["violations"],
            "callers_1": {k: round(v, 3) for k, v in one.items()},
            "callers_64": {k: round(v, 3) for k, v in many.items()},
            "throttled": throttle,
        }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
