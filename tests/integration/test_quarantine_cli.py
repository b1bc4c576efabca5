"""``cadastre quarantine list | replay`` as an operator runs them: a real sync of the RESO
simulator (its own process) with bad records, a fixed mapping file, a replay, and exactly the
affected records stored, their entries resolved, the others untouched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cadastre.cli.quarantine import _list, _replay
from cadastre.store import open_store
from cadastre.sync import ReplaySummary
from cadastre.testing import FakeClock, FakeStore, FakeUnitOfWork
from tests.integration.cli_env import add_reso, cli, set_up_austin, simulator

MAPPING = "mapping: austin\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
FIXED = (
    MAPPING.replace("version: 1", "version: 2") + "enums: {StandardStatus: {Sold-ish: Closed}}\n"
)


@pytest.fixture(scope="module")
def mls() -> Iterator[str]:
    yield from simulator(
        "reso", "--port", "0", "--records", "400", "--bad-record-rate", "0.05", "--no-rate-limit"
    )


@pytest.fixture
def run(tmp_path: Path, mls: str):
    invoke = cli(tmp_path, columns=160)
    set_up_austin(tmp_path, invoke, {"austin": MAPPING})
    add_reso(invoke, mls, mapping="austin", page_size=100)
    return invoke


def listed(run, *args: str) -> dict[str, dict[str, Any]]:
    shown = json.loads(run("quarantine", "list", "--json", "--limit", "10000", *args))
    assert shown["more"] == 0
    return {e["id"]: e for e in shown["entries"]}


def stored(tmp_path: Path, keys: list[str]) -> dict[str, Any]:
    """The stored records of these listing keys, read from the hub's SQLite file."""

    async def read() -> dict[str, Any]:
        store = await open_store(f"sqlite:///{tmp_path / 'var' / 'cadastre.db'}", migrate=False)
        try:
            async with store.unit_of_work("acme", read_only=True) as uow:
                out = {}
                for key in keys:
                    canonical = await uow.xref.resolve("mls", "austin", "Listing", key)
                    out[key] = canonical and await uow.records.get("Listing", canonical)
                return out
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_fixed_mapping_and_a_replay_ingest_exactly_the_affected_records(
    run, tmp_path: Path
) -> None:
    assert "quarantined because unknown enum value" in run("sync", "austin", "-t", "acme")
    before = listed(run)
    codes = {e["code"] for e in before.values()}
    assert {"unknown_enum_value", "invalid_value"} <= codes, codes
    enums = {i: e for i, e in before.items() if e["code"] == "unknown_enum_value"}
    others = {i: e for i, e in before.items() if i not in enums}
    assert all(e["payload"]["StandardStatus"] == "Sold-ish" for e in enums.values())
    keys = [e["external_id"] for e in enums.values()]
    assert all(v is None for v in stored(tmp_path, keys).values())
    table = run("quarantine", "list", "-c", "austin", "--code", "unknown_enum_value")
    assert all(i in table for i in enums)
    assert not any(i in table for i in others)

    (tmp_path / "mappings" / "austin.yaml").write_text(FIXED)
    out = run("quarantine", "replay", "-c", "austin", "--code", "unknown_enum_value")
    assert "replay of austin" in out
    rows = {" ".join(line.strip("│ ").split()) for line in out.splitlines()}
    assert f"replayed │ {len(enums)}" in rows, out
    assert f"resolved │ {len(enums)}" in rows, out
    assert "still failing │ 0" in rows, out

    after = listed(run)
    assert after == others  # resolved: gone; the rest untouched (same reason, no attempt)
    records = stored(tmp_path, keys)
    assert all(r is not None and r.data["StandardStatus"] == "Closed" for r in records.values())

    # Replaying the rest: the mapping cannot mend them, so each stays, with an attempt counted
    out = run("quarantine", "replay", "-t", "acme")
    assert "still failing" in out
    final = listed(run)
    assert final.keys() == others.keys()
    assert all(e["attempts"] == 1 for e in final.values())
    assert all(final[i]["payload"] == others[i]["payload"] for i in final)


def test_bad_replay_input_is_refused_and_changes_nothing(run) -> None:
    run("sync", "austin", "-t", "acme")
    before = listed(run)
    out = run("quarantine", "replay", "--id", next(iter(before)), "--id", "no-such-id", code=2)
    assert "quarantine entry 'no-such-id'" in out
    assert "Traceback" not in out
    assert listed(run) == before
    out = run("quarantine", "list", "-t", "nobody", code=2)
    assert "nobody" in out
    assert "nothing to replay" in run("quarantine", "replay", "--code", "no_such_code")


def test_list_shows_a_limited_number_and_counts_the_rest(run) -> None:
    run("sync", "austin", "-t", "acme")
    everything = listed(run)
    assert len(everything) > 3
    shown = json.loads(run("quarantine", "list", "--json", "--limit", "3"))
    assert [e["id"] for e in shown["entries"]] == list(everything)[:3]  # the oldest
    assert shown["more"] == len(everything) - 3
    table = run("quarantine", "list", "-n", "3")
    assert f"{len(everything) - 3} more not shown" in table
    assert sum(i in table for i in everything) == 3
    assert "more not shown" not in run("quarantine", "list")  # default 100: all of them
    assert "--limit" in run("quarantine", "list", "--limit", "0", code=2)


class _Counted:
    """A quarantine repository that records each ``open_items`` call's limit and its size."""

    def __init__(self, inner: Any, calls: list[tuple[int | None, int]]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_items(self, *args: Any, **kw: Any) -> list[Any]:
        found: list[Any] = await self._inner.open_items(*args, **kw)
        self._calls.append((kw.get("limit"), len(found)))
        return found


class CountingStore(FakeStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls: list[tuple[int | None, int]] = []

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> FakeUnitOfWork:
        uow = super().unit_of_work(tenant, read_only=read_only)
        uow.quarantine = _Counted(uow.quarantine, self.calls)
        return uow


class StubHub:
    """What ``quarantine list`` and ``replay`` use of a hub; replays are only recorded."""

    def __init__(self, store: FakeStore, clock: FakeClock) -> None:
        self.store, self.clock, self.tenants = store, clock, self
        self.replays: list[tuple[str, str, str | None]] = []

    async def require(self, tenant: str) -> None:
        return None

    async def replay_quarantine(self, tenant: str, name: str, **kw: Any) -> ReplaySummary:
        self.replays.append((tenant, name, kw["code"]))
        return ReplaySummary(name)


def test_list_and_replay_read_entries_in_bounded_pages() -> None:
    async def check() -> None:
        clock = FakeClock()
        store = CountingStore(clock)
        async with store.unit_of_work("acme") as uow:
            for n in range(1_200):  # a mass update's worth: more than one page of 500
                await uow.quarantine.add(
                    connection="late" if n >= 1_150 else "early", entity="Listing",
                    external_id=f"L{n}", reason="bad", payload={"n": n, "blob": "x" * 100},
                    code="invalid_value",
                )  # fmt: skip
            await uow.commit()
        hub = StubHub(store, clock)

        def bounded() -> bool:
            return all(limit is not None and n <= limit <= 500 for limit, n in store.calls)

        _, found, more = await _list(hub, "acme", None, None, 7)  # type: ignore[arg-type]
        assert ([q.external_id for _, q in found], more) == ([f"L{n}" for n in range(7)], 1_193)
        assert bounded(), store.calls
        store.calls.clear()
        _, found, more = await _list(hub, "acme", "late", "invalid_value", 100)  # type: ignore[arg-type]
        assert (len(found), more) == (50, 0)
        assert bounded(), store.calls

        store.calls.clear()
        await _replay(hub, "acme", None, "invalid_value", ())  # type: ignore[arg-type]
        assert hub.replays == [
            ("acme", "early", "invalid_value"),
            ("acme", "late", "invalid_value"),
        ]
        assert bounded(), store.calls
        store.calls.clear()
        await _replay(hub, "acme", "late", None, ())  # type: ignore[arg-type]
        assert hub.replays[-1] == ("acme", "late", None)
        assert store.calls == []  # the store's counts tell which connections hold some

    asyncio.run(check())
