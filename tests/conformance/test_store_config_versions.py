"""``ConfigVersionsStoreSuite`` (versions of mapping and ownership files, issue 9) against every
store adapter; and, on PostgreSQL, two workers that both read "no change recorded yet" before
either writes: one version between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from cadastre.store import PostgresStore
from cadastre.store.repositories import config_versions as repository
from cadastre.testing import FakeClock
from cadastre.testing.store_config_suite import V1, V2, ConfigVersionsStoreSuite
from tests.conformance.adapters import OnFakeStore, OnPostgresStore, OnSqliteStore


class TestFakeStoreConfigVersions(OnFakeStore, ConfigVersionsStoreSuite):
    pass


class TestSqliteStoreConfigVersions(OnSqliteStore, ConfigVersionsStoreSuite):
    pass


@pytest.mark.postgres
class TestPostgresStoreConfigVersions(OnPostgresStore, ConfigVersionsStoreSuite):
    truncate = "config_versions"

    @pytest.fixture
    async def other(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        """A second worker: a store (engine, pool) of its own on the same database."""
        store = PostgresStore(postgres_url, clock)
        yield store
        await store.close()

    @pytest.fixture
    def both_read_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each recorder's first read of the latest version waits until the other has read
        too: both see the same latest before either inserts, which is the race to lose."""
        barrier = asyncio.Barrier(2)
        read = repository._latest
        waited: set[asyncio.Task[Any]] = set()

        async def latest(*args: Any) -> Any:
            found = await read(*args)
            task = asyncio.current_task()
            assert task is not None
            if task not in waited:
                waited.add(task)
                await asyncio.wait_for(barrier.wait(), timeout=10)
            return found

        monkeypatch.setattr(repository, "_latest", latest)

    async def _race(self, *calls: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
        return list(await asyncio.gather(*(asyncio.create_task(call()) for call in calls)))

    @pytest.mark.usefixtures("both_read_first")
    async def test_two_workers_noticing_one_edit_make_one_version(
        self, store: PostgresStore, other: PostgresStore
    ) -> None:
        made = await self._race(
            lambda: store.record_config_version("mapping", "austin", V1, actor="worker-1"),
            lambda: other.record_config_version("mapping", "austin", V1, actor="worker-2"),
        )
        assert [m.version for m in made] == [1, 1]
        assert made[0] == made[1]  # the loser found the winner's row and returned it
        assert len(await store.config_versions("mapping", "austin")) == 1

    @pytest.mark.usefixtures("both_read_first")
    async def test_two_workers_recording_different_texts_make_two_versions(
        self, store: PostgresStore, other: PostgresStore
    ) -> None:
        made = await self._race(
            lambda: store.record_config_version("mapping", "austin", V1, actor="worker-1"),
            lambda: other.record_config_version("mapping", "austin", V2, actor="worker-2"),
        )
        assert sorted(m.version for m in made) == [1, 2]
        history = await store.config_versions("mapping", "austin")
        assert sorted(v.content for v in history) == sorted([V1, V2])
