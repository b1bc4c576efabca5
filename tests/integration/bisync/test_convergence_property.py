"""Promise 23's property (issue 8 item 9): whatever the interleaving of edits on both vendors and
through the platform, webhook deliveries, duplicates, reorders and drops, polls, write-back
passes, crashes between the vendor's answer and our commit, and clock steps, once the storm stops
and ``quiesce()`` has run:

- every system (the CRM, the PMS, the hub's Contact and Resident) holds the same value of every
  shared field;
- no platform write is applied twice: every write target ``applied`` (or superseded), none
  ``indeterminate`` or ``failed``, and no vendor object created;
- the review queue is empty after resolution; the audit chain verifies;
- writes stop within ``quiesce``'s bound (termination).

The simulators and servers are shared by every example (``Bench``); each example gets a fresh
hub copied from a template and the simulators restored, well under a second. CI runs 25 examples
with a fixed seed (printed); ``pytest --full`` runs 300.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.integration.bisync.harness import CRM, PMS, Bench, World, open_bench

SEED = 20261127
FIELDS = ("FirstName", "LastName", "Email")
SYSTEMS = (CRM, PMS)


def value(name: str, n: int) -> str:
    return f"p{n}@example.com" if name == "Email" else f"{name[:5]}{n}"


edit = st.tuples(st.sampled_from(["crm", "pms", "Contact", "Resident"]),
                 st.sampled_from(FIELDS), st.integers(0, 3))  # fmt: skip
action = st.one_of(
    st.tuples(st.just("edit"), edit),
    st.tuples(
        st.sampled_from(["deliver", "duplicate", "drop"]),
        st.tuples(st.sampled_from(SYSTEMS), st.integers(0, 3)),
    ),
    st.tuples(st.just("poll"), st.sampled_from(SYSTEMS)),
    st.tuples(st.sampled_from(["relay", "writeback", "crash"]), st.none()),
    st.tuples(st.just("advance"), st.sampled_from([1, 3, 30, 400])),
)


async def act(world: World, step: tuple[str, Any]) -> None:
    kind, arg = step
    if kind == "edit":
        where, name, n = arg
        if where == "crm":
            world.edit_crm(name, value(name, n))
        elif where == "pms":
            world.edit_pms(name, value(name, n))
        else:
            await world.edit_platform(where, {name: value(name, n)})
        world.advance(1)  # two systems' edits at one instant: see the docs' known gaps
    elif kind == "deliver":
        await world.deliver(*arg)
    elif kind == "duplicate":
        await world.duplicate(*arg)
    elif kind == "drop":
        world.drop(*arg)
    elif kind == "poll":
        await world.poll(arg)
    elif kind == "relay":
        await world.normalise()
        await world.relay()
    elif kind == "writeback":
        await world.run_writeback()
    elif kind == "crash":
        await world.crash_writeback()
    else:
        world.advance(arg)


async def check(bench: Bench, steps: list[tuple[str, Any]]) -> None:
    async with bench.world() as world:
        for step in steps:
            await act(world, step)
        await world.quiesce(rounds=8)
        seen = await world.observe()
        where = f"{world.log}"
        assert seen.agreed(), (seen.sides(), where)
        assert not seen.open_conflicts, where
        assert seen.audit_ok, where
        states = seen.states()
        assert set(states) <= {"applied", "skipped"}, (states, where)
        assert seen.crm_creates == seen.pms_creates == 0, where
        # one vendor write per applied target at most (the gateway's resend of a whole-object
        # PUT aside, none is armed here): no write is sent twice
        assert seen.crm_patches + seen.pms_puts <= states["applied"] + world.crashes, (
            seen.crm_patches, seen.pms_puts, states, where)  # fmt: skip


# Interleavings the property found (shrunk), kept as regressions:
SHRUNK: dict[str, list[tuple[str, Any]]] = {
    # A crash after Buildium acknowledged a propagation, then newer platform writes of one of its
    # fields: recovery read back the newer value and called the write indeterminate. Now the
    # superseded field is left out (sync/writeback_worker.py ``_still_current``).
    "superseded-recovery": [
        ("edit", ("crm", "Email", 1)), ("poll", CRM), ("edit", ("crm", "FirstName", 0)),
        ("relay", None), ("crash", None), ("deliver", (CRM, 3)),
        ("edit", ("Resident", "Email", 0)), ("relay", None), ("advance", 1),
        ("edit", ("Resident", "Email", 0)), ("relay", None),
    ],
    # A CRM edit whose webhook was dropped, then our PATCHes of other fields: the poll read the
    # contact with our PATCH's version and dropped it whole as our echo, so the edit never
    # arrived and the CRM kept a value nobody else had. Now a version-matched read that carries
    # a different value of a field we did not write passes (sync/echo.py ``_brings_news``).
    "echo-with-news": [
        ("edit", ("crm", "Email", 1)), ("edit", ("pms", "FirstName", 2)), ("poll", PMS),
        ("advance", 1), ("advance", 1), ("edit", ("pms", "LastName", 3)), ("advance", 1),
        ("drop", (CRM, 3)), ("deliver", (PMS, 1)),
    ],
    # A whole-object read re-dated an unchanged shared field with the read's time. Buildium's
    # did it on the resident: the CRM's newer FirstName lost there by source time while the
    # contact's vector judged Buildium's value a repeat, so the two records ended apart. A
    # HubSpot read did it on the contact: its old FirstName, now "newer", was carried to the
    # resident and to Buildium over the platform's write acknowledged before a crash (recovered
    # as indeterminate, the platform's value lost). Now an unchanged shared field keeps the
    # stamp of its value (sync/plan.py ``plan_upsert``).
    "linked-apart": [
        ("edit", ("crm", "LastName", 0)), ("edit", ("Resident", "FirstName", 1)),
        ("edit", ("crm", "LastName", 0)), ("poll", CRM), ("deliver", (CRM, 0)),
        ("writeback", None), ("advance", 1), ("poll", PMS), ("relay", None), ("advance", 1),
        ("edit", ("Contact", "FirstName", 0)), ("drop", (CRM, 3)), ("drop", (CRM, 2)),
        ("poll", CRM), ("poll", CRM), ("writeback", None), ("duplicate", (PMS, 2)),
        ("edit", ("pms", "Email", 0)),
    ],
    "crashed-platform-write-overwritten": [
        ("edit", ("crm", "LastName", 0)), ("edit", ("Resident", "FirstName", 1)),
        ("edit", ("crm", "LastName", 0)), ("poll", CRM), ("deliver", (CRM, 0)),
        ("edit", ("pms", "LastName", 3)), ("poll", PMS), ("crash", None), ("writeback", None),
        ("edit", ("Contact", "LastName", 0)), ("crash", None), ("drop", (CRM, 1)),
    ],
}  # fmt: skip


async def test_the_shrunk_interleavings_converge(tmp_path: Path) -> None:
    async with open_bench(tmp_path) as bench:
        for steps in SHRUNK.values():
            await check(bench, steps)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_random_interleavings_converge(tmp_path: Path, full_trials: bool) -> None:
    examples = 300 if full_trials else 12  # CI budget; --full: 300
    print(f"hypothesis seed {SEED}, {examples} examples")  # noqa: T201 - to reproduce a run
    with asyncio.Runner() as runner:
        opened = open_bench(tmp_path)
        bench = runner.run(opened.__aenter__())
        try:

            @seed(SEED)
            @settings(max_examples=examples, deadline=None, derandomize=not full_trials,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture],
                      database=None)  # fmt: skip
            @given(steps=st.lists(action, min_size=1, max_size=18))
            def run(steps: list[tuple[str, Any]]) -> None:
                runner.run(check(bench, steps))

            run()
        finally:
            runner.run(opened.__aexit__(None, None, None))
