"""The rules of API idempotency keys that need no HTTP: what a key may be, what makes two
requests the same, and the reaper over every tenant (FakeStore, fake clock)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cadastre.directory import idempotency
from cadastre.directory.idempotency import IdempotencyReaper, fingerprint, valid_key
from cadastre.testing import EPOCH, FakeClock, FakeStore


@pytest.mark.parametrize(
    ("key", "ok"),
    [("a", True), ("k" * 255, True), ("!~", True), ('"quoted"', True), ("", False),
     ("k" * 256, False), ("a b", False), ("tab\t", False), ("é", False), ("\x7f", False)],
)  # fmt: skip
def test_a_key_is_1_to_255_visible_ascii_characters(key: str, ok: bool) -> None:
    assert valid_key(key) is ok


def test_the_fingerprint_is_of_method_target_and_canonical_body() -> None:
    base = fingerprint("POST", "/v1/things", b'{"name": "kettle", "size": 2}')
    assert base == fingerprint("post", "/v1/things", b'{"size":2,"name":"kettle"}')
    assert len(base) == 64
    others = {
        fingerprint("PATCH", "/v1/things", b'{"name": "kettle", "size": 2}'),
        fingerprint("POST", "/v1/things?x=1", b'{"name": "kettle", "size": 2}'),
        fingerprint("POST", "/v1/things", b'{"name": "kettle", "size": 3}'),
        fingerprint("POST", "/v1/things", b""),
        fingerprint("POST", "/v1/things", b"not json"),
        fingerprint("POST", "/v1/thing", b's{"name": "kettle", "size": 2}'),  # moved boundary
    }
    assert base not in others
    assert len(others) == 6
    assert fingerprint("POST", "/v1/t", b"\xff\xfe") == fingerprint("POST", "/v1/t", b"\xff\xfe")


async def test_the_reaper_forgets_old_keys_of_every_tenant_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idempotency, "REAP_BATCH", 2)
    clock = FakeClock()
    store = FakeStore(clock)
    for tenant in ("acme", "globex"):
        await store.create_tenant(tenant, tenant)
        async with store.unit_of_work(tenant) as uow:
            for i in range(3):
                await uow.idempotency.begin(
                    f"k{i}", method="POST", path="/v1/x", fingerprint="f" * 64, holder="h",
                    locked_until=EPOCH,
                )  # fmt: skip
            await uow.commit()
    reaper = IdempotencyReaper(store, clock)
    clock.advance(timedelta(hours=24).total_seconds())
    assert await reaper.reap() == 0  # exactly 24 h old: kept
    clock.advance(1)
    assert await reaper.reap() == 6
    async with store.unit_of_work("globex", read_only=True) as uow:
        assert await uow.idempotency.get("k0") is None


async def test_the_reaper_runs_every_hour_on_the_hubs_clock() -> None:
    clock = FakeClock()
    store = FakeStore(clock)
    await store.create_tenant("acme", "Acme")
    async with IdempotencyReaper(store, clock):
        while clock.sleepers == 0:  # the first round is over: the reaper sleeps for an hour
            await asyncio.sleep(0)
        async with store.unit_of_work("acme") as uow:
            await uow.idempotency.begin(
                "k", method="POST", path="/v1/x", fingerprint="f" * 64, holder="h",
                locked_until=EPOCH,
            )  # fmt: skip
            await uow.commit()
        clock.advance(timedelta(hours=25).total_seconds())  # past the next round and the keep
        for _ in range(100):
            async with store.unit_of_work("acme", read_only=True) as uow:
                if await uow.idempotency.get("k") is None:
                    break
            await asyncio.sleep(0)
        else:
            pytest.fail("the reaper's next round did not come")
