"""``ConfigVersionsStoreSuite``: the conformance tests of the Store-level configuration versions
(issue 9): numbering per (kind, name), the latest returned unchanged for the same text, a text
that comes back is a new version, the text kept exactly, and concurrent recordings of one text
making one version. Run against FakeStore, SQLite and PostgreSQL
(``tests/conformance/test_store_config_versions.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.testing.clock import EPOCH, FakeClock

if TYPE_CHECKING:
    from cadastre.ports import Store

MAPPING, OWNERSHIP = "mapping", "ownership"
V1 = "mapping: austin\nversion: 1\nextends: mls/reso\n"
V2 = V1.replace("version: 1", "version: 2") + "enums: {StandardStatus: {Sold-ish: Closed}}\n"


class ConfigVersionsStoreSuite:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    async def test_the_first_text_is_version_1(self, store: Store, clock: FakeClock) -> None:
        made = await store.record_config_version(MAPPING, "austin", V1, actor="ann", note="first")
        assert (made.kind, made.name, made.version, made.content) == (MAPPING, "austin", 1, V1)
        assert made.sha256 == hashlib.sha256(V1.encode()).hexdigest()
        assert (made.changed_by, made.changed_at, made.note) == ("ann", EPOCH, "first")
        assert await store.config_versions(MAPPING, "austin") == [made]
        assert await store.config_version(MAPPING, "austin", 1) == made

    async def test_the_same_text_again_returns_the_latest_unchanged(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = await store.record_config_version(MAPPING, "austin", V1, actor="ann")
        clock.advance(300)
        again = await store.record_config_version(MAPPING, "austin", V1, actor="bob", note="x")
        assert again == first  # not bob's, not now: nothing was recorded
        assert len(await store.config_versions(MAPPING, "austin")) == 1

    async def test_each_change_is_the_next_version_and_a_text_that_returns_is_new(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.record_config_version(MAPPING, "austin", V1, actor="ann")
        clock.advance(60)
        second = await store.record_config_version(MAPPING, "austin", V2, actor="bob")
        clock.advance(60)
        third = await store.record_config_version(
            MAPPING, "austin", V1, actor="cli", note="rollback to v1"
        )
        assert (second.version, second.changed_at) == (2, EPOCH + timedelta(minutes=1))
        assert (third.version, third.content, third.note) == (3, V1, "rollback to v1")
        history = await store.config_versions(MAPPING, "austin")
        assert [(v.version, v.content, v.changed_by) for v in history] == [
            (1, V1, "ann"), (2, V2, "bob"), (3, V1, "cli"),
        ]  # fmt: skip

    async def test_kinds_and_names_are_numbered_apart(self, store: Store) -> None:
        await store.record_config_version(MAPPING, "austin", V1, actor="a")
        await store.record_config_version(MAPPING, "austin", V2, actor="a")
        other = await store.record_config_version(MAPPING, "denver", V1, actor="a")
        owned = await store.record_config_version(OWNERSHIP, "austin", V1, actor="a")
        assert (other.version, owned.version) == (1, 1)
        assert [v.version for v in await store.config_versions(MAPPING, "austin")] == [1, 2]
        assert await store.config_versions(OWNERSHIP, "denver") == []

    async def test_unknown_versions_are_none(self, store: Store) -> None:
        await store.record_config_version(MAPPING, "austin", V1, actor="a")
        for kind, name, version in [
            (MAPPING, "austin", 0), (MAPPING, "austin", 2), (MAPPING, "austin", -1),
            (MAPPING, "nobody", 1), (OWNERSHIP, "austin", 1),
        ]:  # fmt: skip
            assert await store.config_version(kind, name, version) is None

    async def test_the_text_is_kept_exactly(self, store: Store) -> None:
        odd = "a: 1\r\nb: 'ünï ☃'\r\n\ttrailing   \n\n\x1b[31m\n"
        await store.record_config_version(MAPPING, "odd", odd, actor="a")
        found = await store.config_version(MAPPING, "odd", 1)
        assert found is not None
        assert found.content == odd
        assert found.sha256 == hashlib.sha256(odd.encode()).hexdigest()
        assert (await store.record_config_version(MAPPING, "odd", odd, actor="b")).version == 1
        stripped = await store.record_config_version(MAPPING, "odd", odd.rstrip(), actor="b")
        assert stripped.version == 2  # whitespace is a change too

    async def test_concurrent_recordings_of_one_text_make_one_version(self, store: Store) -> None:
        await store.record_config_version(MAPPING, "austin", V1, actor="a")
        made = await asyncio.gather(
            *(store.record_config_version(MAPPING, "austin", V2, actor=f"w{i}") for i in range(8))
        )
        assert {m.version for m in made} == {2}
        assert len({m.changed_by for m in made}) == 1  # all got the one row
        assert [v.version for v in await store.config_versions(MAPPING, "austin")] == [1, 2]

    async def test_concurrent_different_texts_get_consecutive_versions(self, store: Store) -> None:
        texts = [f"{V1}# edit {i}\n" for i in range(6)]
        made = await asyncio.gather(
            *(store.record_config_version(MAPPING, "austin", text, actor="w") for text in texts)
        )
        history = await store.config_versions(MAPPING, "austin")
        assert [v.version for v in history] == [1, 2, 3, 4, 5, 6]
        assert sorted(v.content for v in history) == sorted(texts)
        assert {m.version: m.content for m in made} == {v.version: v.content for v in history}
