"""One vendor's outage stays contained (RELIABILITY.md #1-#4), over real HTTP on loopback.

Vendor A fails every call (then, separately, hangs on every call) while four connections keep
syncing from it; vendor B's sync runs at the same time. B completes, and the pipeline's own call
records show that none of B's calls queued at A's bulkhead, consulted A's breakers or used A's
connection pool; A never has more calls in flight than its bulkhead allows. Then A's breaker, on
the hub's fake clock, opens, refuses without sending, probes, and closes when A recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.clock import SystemClock
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.errors import CircuitOpen, VendorUnavailable
from cadastre.ports import ApiKeyScope
from cadastre.simulators import FaultProfile, ResoSimulator, serve
from cadastre.testing import FakeClock

TENANT = "acme"
LOOPBACK = ("127.0.0.0/8", "::1")
MAPPING = "mapping: test-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
A_CAP = 2


async def make_hub(tmp_path: Path, clock: Any) -> Hub:
    mappings = tmp_path / "mappings"
    mappings.mkdir(exist_ok=True)
    (mappings / "test-mls.yaml").write_text(MAPPING)
    settings = Settings(data_dir=tmp_path, mappings_dir=mappings, gateway_allow_hosts=LOOPBACK)
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    await hub.tenants.create(TENANT, "Acme")
    # A credential is one account at one vendor (its token is shared by every connection that
    # names it): each simulator gets its own.
    for vendor in ("a", "b"):
        await hub.vault.add(
            TENANT, f"sim-{vendor}", "oauth2_client_credentials",
            {"client_id": "demo-client", "client_secret": "demo-secret"},
        )  # fmt: skip
    return hub


async def connect(hub: Hub, name: str, url: str, gateway: dict[str, Any], **config: Any) -> None:
    await hub.connections.put(TENANT, ConnectionSpec(
        name=name, system="mls", connector="mls/reso", credential=f"sim-{name[0]}",
        config={"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "mapping": "test-mls", "gateway": {"allow_hosts": list(LOOPBACK), **gateway},
                **config},
    ))  # fmt: skip


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await make_hub(tmp_path, SystemClock())
    yield hub
    await hub.close()


@pytest.mark.parametrize(
    "outage",
    # The outage hits A's data calls; its token endpoint keeps working (a failing token endpoint
    # is cooled down by the vault instead, tests/unit/vault/test_tokens.py).
    [
        FaultProfile(error_rate=1.0, paths=("/odata",)),
        FaultProfile(hang_rate=1.0, paths=("/odata",)),
    ],
    ids=["failing", "hanging"],
)
@pytest.mark.timeout(120)
async def test_vendor_b_syncs_while_vendor_a_is_down(hub: Hub, outage: FaultProfile) -> None:
    sim_a = ResoSimulator(records=200, seed=1, rate_limit=None, faults=outage)
    sim_b = ResoSimulator(records=300, seed=2, rate_limit=None)
    a_gateway = {
        "vendor": "vendor-a", "bulkhead": {"max_concurrent": A_CAP, "max_wait": 0.2},
        "breaker": {"minimum_calls": 4, "window_size": 10, "open_duration": 0.5},
    }  # fmt: skip
    async with serve(sim_a.app) as a, serve(sim_b.app) as b:
        for n in range(4):
            await connect(hub, f"a{n}", a.url, a_gateway, read_timeout=0.3, max_attempts=2)
        await connect(hub, "b", b.url, {"vendor": "vendor-b"}, page_size=25)

        async def keep_syncing(name: str) -> None:
            while True:
                with contextlib.suppress(VendorUnavailable):
                    await hub.sync(TENANT, name)

        pressure = [asyncio.create_task(keep_syncing(f"a{n}")) for n in range(4)]
        # B starts once A's outage is in full swing: its bulkhead full, its breakers refusing.
        for _ in range(200):
            if any(c.outcome in {"CircuitOpen", "BulkheadFull"}
                   for c in hub.controls.calls.of(vendor="vendor-a")):  # fmt: skip
                break
            await asyncio.sleep(0.05)
        report = await hub.sync(TENANT, "b")
        for task in pressure:  # A's syncs may be sleeping in their own backoff; stop them there
            task.cancel()
        await asyncio.gather(*pressure, return_exceptions=True)

    assert report.tally.fetched == 300
    calls_b = hub.controls.calls.of(vendor="vendor-b")
    calls_a = hub.controls.calls.of(vendor="vendor-a")
    assert len(calls_b) >= 300 // 25
    assert len(calls_a) > 0
    assert all(c.outcome == "success" for c in calls_b)
    # B queued only at its own bulkhead, and never waited there
    assert {c.bulkhead for c in calls_b} == {"vendor-b"}
    assert max(c.bulkhead_wait for c in calls_b) == 0.0
    # B consulted only its own breaker, which never refused it
    assert {c.breaker for c in calls_b} == {f"{TENANT}/b"}
    assert not any(c.breaker_refused for c in calls_b)
    # and B's connections were never A's
    assert not {c.pool for c in calls_b} & {c.pool for c in calls_a}
    # A: never more in flight than its cap, and calls were turned away without reaching it
    assert sim_a.stats.max_in_flight <= A_CAP
    # (a call its breaker refused never reached the bulkhead)
    assert {c.bulkhead for c in calls_a if not c.breaker_refused} == {"vendor-a"}
    assert any(c.outcome in {"CircuitOpen", "BulkheadFull"} for c in calls_a)


async def health(hub: Hub, key: str, name: str) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=create_app(hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        answer = await client.get(f"/v1/connections/{name}/health",
                                  headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["breaker"])


@pytest.mark.timeout(120)
async def test_the_breaker_opens_refuses_probes_and_closes_when_the_vendor_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC), autojump=True)
    hub = await make_hub(tmp_path, clock)
    key = (await hub.keys.create(TENANT, ApiKeyScope.READ, label="ops")).plaintext
    sim = ResoSimulator(records=60, rate_limit=None, faults=FaultProfile(error_rate=1.0))
    breaker = {"minimum_calls": 4, "window_size": 10, "open_duration": 600,
               "half_open_probes": 2}  # fmt: skip
    try:
        async with serve(sim.app) as running:
            await connect(hub, "a", running.url, {"vendor": "vendor-a", "breaker": breaker},
                          page_size=20, max_attempts=2)  # fmt: skip
            assert (await health(hub, key, "a"))["state"] == "closed"
            with pytest.raises(VendorUnavailable):
                await hub.sync(TENANT, "a")
            opened = await health(hub, key, "a")
            assert opened["state"] == "open"
            assert opened["failure_rate"] >= 0.5
            assert opened["retry_in_seconds"] > 0

            # While open, the vendor receives nothing at all.
            before = sim.stats.requests
            with pytest.raises(CircuitOpen):
                await hub.sync(TENANT, "a")
            assert sim.stats.requests == before

            sim.faults = FaultProfile()  # the vendor recovers
            clock.advance(600)
            assert (await health(hub, key, "a"))["state"] == "half_open"
            report = await hub.sync(TENANT, "a")
            assert report.tally.fetched == 60
            closed = await health(hub, key, "a")
            assert closed["state"] == "closed"
            assert closed["times_opened"] == 1
    finally:
        await hub.close()
    value = hub.metrics.registry.get_sample_value
    labels = {"vendor": "vendor-a", "connection": "a"}
    assert value("cadastre_breaker_state", labels) == 0
    for state in ("open", "half_open", "closed"):
        assert value("cadastre_breaker_transitions_total", {**labels, "state": state}) == 1
