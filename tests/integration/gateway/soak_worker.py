"""One worker of the rate-limit soak: a gateway to the RESO simulator, driven at a paced demand
by many callers for a while, its buckets in memory or in Redis. Run by the soak test, once in its
own process and twice side by side:

    python -m tests.integration.gateway.soak_worker --url URL --seconds 8 --demand 60 \
        [--redis redis://127.0.0.1:6379/0 --prefix cadastre-soak:x:]

Prints one JSON line: calls sent, refused locally (slot past the deadline), failed otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson

from cadastre.clock import SystemClock
from cadastre.errors import VendorRateLimited, VendorUnavailable
from cadastre.gateway import (
    FailSafeRateLimitBackend,
    Gateway,
    GatewayControls,
    GatewaySettings,
    MemoryRateLimitBackend,
    RedisRateLimitBackend,
    VendorPolicy,
)
from cadastre.ports import RateLimitBackend
from cadastre.testing.load import drive
from cadastre.testing.vault import VaultKit

LOOPBACK = ("127.0.0.0/8", "::1")


async def soak(
    url: str,
    seconds: float,
    demand: float,
    callers: int,
    requests: int,
    per: float,
    backend: RateLimitBackend,
) -> dict[str, Any]:
    clock = SystemClock()
    controls = GatewayControls(clock, backend=backend)
    settings = GatewaySettings.model_validate(
        {"quota": "soak", "rate_limit": {"requests": requests, "per": per}}
    )
    guards = controls.guards(
        tenant="soak", connection=f"worker-{os.getpid()}", vendor="reso-sim", settings=settings,
        credential="soak",
    )  # fmt: skip
    policy = VendorPolicy(vendor="reso-sim", total=5.0, read=5.0, max_attempts=3)
    auth = await VaultKit(clock).client_credentials(
        "soak", "soak", "demo-client", "demo-secret", token_url=f"{url}/oauth/token"
    )
    tally = {"sent": 0, "refused": 0, "failed": 0}

    async def call() -> None:
        try:
            await gateway.get("Property", params={"$top": 1, "$select": "ListingKey"})
            tally["sent"] += 1
        except VendorRateLimited:
            tally["refused"] += 1
        except VendorUnavailable:
            tally["failed"] += 1

    async with Gateway(
        f"{url}/odata", policy, clock=clock, auth=auth, guards=guards, allow_hosts=LOOPBACK
    ) as gateway:
        await drive(call, callers=callers, rate=demand, seconds=seconds)
    await controls.aclose()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--demand", type=float, default=90.0, help="requests per second asked")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--per", type=float, default=1.0)
    parser.add_argument("--redis")
    parser.add_argument("--prefix", default="cadastre-soak:")
    args = parser.parse_args()
    backend: RateLimitBackend
    if args.redis:
        backend = FailSafeRateLimitBackend(
            RedisRateLimitBackend(args.redis, prefix=args.prefix), SystemClock()
        )
    else:
        backend = MemoryRateLimitBackend(SystemClock())
    result = asyncio.run(soak(args.url, args.seconds, args.demand, args.callers, args.requests,
                              args.per, backend))  # fmt: skip
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
