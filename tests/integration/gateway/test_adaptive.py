"""Adaptive limits over real HTTP: a connection that declares no rate limit still slows down
before the vendor says no, from the vendor's own ``X-RateLimit-*`` / ``RateLimit-*`` headers,
where a client that ignores them runs into the limit."""

from __future__ import annotations

import httpx
import pytest

from cadastre.clock import SystemClock
from cadastre.errors import VendorRateLimited
from cadastre.gateway import Gateway, GatewayControls, GatewaySettings, Guards, VendorPolicy
from cadastre.simulators import RateLimit, ResoSimulator, serve
from cadastre.testing.vault import VaultKit

LOOPBACK = ("127.0.0.0/8", "::1")
LIMIT = RateLimit(requests=10, per=1.0)
CALLS = 25


async def sim_gateway(
    url: str, policy: VendorPolicy, clock: SystemClock, guards: Guards
) -> Gateway:
    """A gateway to the simulator with its demo client-credentials login."""
    auth = await VaultKit(clock).client_credentials(
        "t", "sim", "demo-client", "demo-secret", token_url=f"{url}/oauth/token"
    )
    return Gateway(
        f"{url}/odata", policy, clock=clock, auth=auth, guards=guards, allow_hosts=LOOPBACK
    )


@pytest.mark.parametrize("style", ["x-ratelimit", "ietf"])
@pytest.mark.timeout(60)
async def test_the_vendors_headers_alone_keep_the_gateway_within_the_limit(style: str) -> None:
    sim = ResoSimulator(records=5, rate_limit=LIMIT, rate_limit_headers=style)  # type: ignore[arg-type]
    clock = SystemClock()
    controls = GatewayControls(clock)
    guards = controls.guards(tenant="t", connection="c", vendor="sim",
                             settings=GatewaySettings(), credential="sim")  # fmt: skip
    policy = VendorPolicy(vendor="sim", max_attempts=1, total=30.0)
    async with serve(sim.app) as running:
        async with await sim_gateway(running.url, policy, clock, guards) as gw:
            for _ in range(CALLS):
                await gw.get("Property", params={"$top": 1})
        assert sim.stats.rate_limit_violations == 0
        assert guards.vendor_limiter is not None
        assert guards.vendor_limiter.headroom is not None  # it read the vendor's headers

        # The control: the same calls from a client that reads no headers hit the limit.
        sim.stats.reset()
        async with httpx.AsyncClient(base_url=running.url) as plain:
            grant, login = {"grant_type": "client_credentials"}, ("demo-client", "demo-secret")
            token = (await plain.post("/oauth/token", data=grant, auth=login)).json()[
                "access_token"
            ]
            for _ in range(CALLS):
                await plain.get("/odata/Property", params={"$top": 1},
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert sim.stats.rate_limit_violations > 0


async def test_a_429_storm_slows_the_bucket_instead_of_hammering() -> None:
    """Every answer a 429 with ``Retry-After: 1``: the gateway sends about one call a second,
    and gives up on calls whose next slot lies past their deadline without sending them."""
    sim = ResoSimulator(records=5, rate_limit=None)
    clock = SystemClock()
    controls = GatewayControls(clock)
    guards = controls.guards(tenant="t", connection="c", vendor="sim",
                             settings=GatewaySettings(), credential="sim")  # fmt: skip
    policy = VendorPolicy(vendor="sim", max_attempts=3, total=2.5)
    async with serve(sim.app) as running:
        async with httpx.AsyncClient(base_url=running.url) as admin:
            storm = {"throttle_rate": 1.0, "retry_after": 1, "paths": ["/odata"]}
            await admin.post("/admin/faults", json=storm)
        async with await sim_gateway(running.url, policy, clock, guards) as gw:
            started = clock.monotonic()
            for _ in range(3):
                with pytest.raises(VendorRateLimited):
                    await gw.get("Property")
            elapsed = clock.monotonic() - started
    throttled = sim.stats.faults_injected["throttle"]
    assert throttled <= elapsed + 2  # about one a second, not max_attempts per call at once
