"""A retried write is never applied twice (RELIABILITY.md #8, #11), over real HTTP on loopback.

The simulator applies each write and then, for a share of them, drops the connection before a
byte of the answer leaves (the ack is lost). A write carrying an ``Idempotency-Key`` is resent
and the vendor replays its first answer; one without a key is never resent."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from cadastre.errors import VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.controls import Guards
from cadastre.gateway.records import CallLog
from cadastre.simulators import FaultProfile, ResoSimulator, serve
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit

LOOPBACK = ("127.0.0.0/8", "::1")
POLICY = VendorPolicy(vendor="reso-sim", max_attempts=6, backoff_base=0.01, backoff_cap=0.05)


def listing(n: int) -> dict[str, object]:
    return {"ListingKey": f"W{n:04d}", "StandardStatus": "Active", "ListPrice": 300_000 + n,
            "City": "Austin"}  # fmt: skip


async def gateway(url: str, calls: CallLog) -> Gateway:
    clock = FakeClock(autojump=True)
    auth = await VaultKit(clock).client_credentials(
        "acme", "sim", "demo-client", "demo-secret", token_url=f"{url}/oauth/token"
    )
    return Gateway(
        f"{url}/odata", POLICY, clock=clock, auth=auth, guards=Guards(calls=calls),
        allow_hosts=LOOPBACK, rng=random.Random(5),
    )  # fmt: skip


async def test_keyed_writes_whose_ack_is_lost_are_applied_exactly_once() -> None:
    lossy = FaultProfile(lost_response_rate=0.4, seed=11, paths=("/odata",))
    sim = ResoSimulator(records=0, rate_limit=None, faults=lossy)
    calls = CallLog()
    async with serve(sim.app) as running, await gateway(running.url, calls) as gw:
        for n in range(40):
            answer = await gw.request("POST", "Property", json=listing(n),
                                      headers={"Idempotency-Key": f"write-{n}"})  # fmt: skip
            assert answer.status_code == 201
            assert answer.json()["ListingKey"] == f"W{n:04d}"
    assert sim.stats.applied_by_listing == Counter({f"W{n:04d}": 1 for n in range(40)})
    resent = [c for c in calls if c.attempts > 1]
    assert resent  # some acks were lost, and their writes were sent again...
    assert sim.stats.idempotent_replays >= len(resent)  # ...and answered from the first time


async def test_a_write_without_a_key_is_never_resent_after_a_lost_ack() -> None:
    sim = ResoSimulator(
        records=0, rate_limit=None, faults=FaultProfile(lost_response_rate=1.0, paths=("/odata",))
    )
    calls = CallLog()
    async with serve(sim.app) as running, await gateway(running.url, calls) as gw:
        with pytest.raises(VendorUnavailable, match="POST /odata/Property"):
            await gw.request("POST", "Property", json=listing(1))
    assert sim.stats.applied_by_listing == Counter({"W0001": 1})  # applied, ack lost
    assert [c.attempts for c in calls] == [1]  # and not sent a second time
