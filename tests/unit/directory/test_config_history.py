"""``ConfigHistory``: what the hub's reads of the registry files version (hand edits when first
seen, nothing while a file's stat is unchanged), how a version is chosen, the atomic write that
loses nothing when it fails, and the check of a mapping with the files that extend it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cadastre.connectors.mls.reso import ResoConnectorSpec
from cadastre.directory import config_history
from cadastre.directory.config_history import (
    OWNERSHIP_NAME,
    SEEN_NOTE,
    ConfigHistory,
    check_mapping,
    write_atomically,
)
from cadastre.errors import MappingError, NotFound
from cadastre.mapping import MappingRegistry
from cadastre.ports import ConfigKind
from cadastre.testing import FakeClock, FakeStore

MAPPING = ConfigKind.MAPPING
V1 = "mapping: austin\nversion: 1\nextends: mls/reso\n"
V2 = "mapping: austin\nversion: 2\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(FakeClock())


@pytest.fixture
def history(store: FakeStore) -> ConfigHistory:
    return ConfigHistory(store, FakeClock())


@pytest.fixture
def registry(tmp_path: Path, history: ConfigHistory) -> MappingRegistry:
    families = {"mls/reso": ResoConnectorSpec.family_mapping}
    return MappingRegistry(tmp_path, families, observer=history.seen_mapping)


def write(path: Path, text: str, *, age: float = 60.0) -> None:
    """Write ``text`` and date the file ``age`` seconds back (past the racy window)."""
    path.write_text(text)
    then = time.time() - age
    os.utime(path, (then, then))


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    sha = config_history._sha

    def counted(text: str) -> str:
        seen.append(text)
        return sha(text)

    monkeypatch.setattr(config_history, "_sha", counted)
    return seen


async def test_a_read_versions_the_file_then_a_hand_edit_when_it_is_next_read(
    tmp_path: Path, registry: MappingRegistry, history: ConfigHistory, store: FakeStore
) -> None:
    write(tmp_path / "austin.yaml", V1)
    registry.load("austin")
    assert await store.config_versions(MAPPING, "austin") == []  # queued, not yet recorded
    [first] = await history.flush()
    assert (first.version, first.content, first.changed_by, first.note) == (
        1, V1, "hub", SEEN_NOTE,
    )  # fmt: skip
    registry.load("austin")
    assert await history.flush() == []  # unchanged: nothing queued

    write(tmp_path / "austin.yaml", V2, age=30)
    registry.load("austin")
    [second] = await history.flush()
    assert (second.version, second.content) == (2, V2)
    assert [v.version for v in await store.config_versions(MAPPING, "austin")] == [1, 2]


async def test_nothing_is_hashed_while_the_stat_is_unchanged(
    tmp_path: Path, registry: MappingRegistry, history: ConfigHistory, hashes: list[str]
) -> None:
    write(tmp_path / "austin.yaml", V1)
    for _ in range(5):
        registry.load("austin")
        await history.flush()
    assert hashes == [V1]  # the first read only


async def test_a_rewrite_inside_the_racy_window_is_still_seen(
    tmp_path: Path, registry: MappingRegistry, history: ConfigHistory, store: FakeStore
) -> None:
    path = tmp_path / "austin.yaml"
    path.write_text(V1)  # just now: its stat cannot be trusted yet
    registry.load("austin")
    stat = path.stat()
    same_size = V1.replace("version: 1", "version: 7")
    path.write_text(same_size)  # same size; and the same mtime and inode, put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    registry.load("austin")
    await history.flush()
    assert [v.content for v in await store.config_versions(MAPPING, "austin")] == [V1, same_size]


async def test_a_file_that_does_not_load_is_not_versioned(
    tmp_path: Path, registry: MappingRegistry, history: ConfigHistory, store: FakeStore
) -> None:
    write(tmp_path / "austin.yaml", "mapping: austin\nversion: [\n")
    with pytest.raises(MappingError):
        registry.load("austin")
    assert await history.flush() == []
    # valid YAML and format, but a value the contract does not have: it does not compile
    write(tmp_path / "austin.yaml", V1 + "enums: {StandardStatus: {Sold-ish: Nope}}\n")
    with pytest.raises(MappingError, match="Nope"):
        registry.load("austin")
    assert await history.flush() == []
    assert await store.config_versions(MAPPING, "austin") == []


async def test_a_failing_store_keeps_what_was_seen_for_the_next_flush(
    tmp_path: Path, registry: MappingRegistry, history: ConfigHistory, store: FakeStore,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from cadastre.errors import StoreUnavailable

    write(tmp_path / "austin.yaml", V1)
    registry.load("austin")
    record = store.record_config_version

    async def down(*args: Any, **kw: Any) -> Any:
        raise StoreUnavailable("database: gone")

    monkeypatch.setattr(store, "record_config_version", down)
    assert await history.flush() == []
    assert "could not version mapping 'austin'" in caplog.text
    monkeypatch.setattr(store, "record_config_version", record)
    [made] = await history.flush()
    assert made.content == V1


async def test_the_ownership_registry_is_one_name_whatever_its_file(
    tmp_path: Path, history: ConfigHistory, store: FakeStore
) -> None:
    await history.observe_ownership(None)  # the packaged default
    own = tmp_path / "own.yaml"
    [default] = await store.config_versions(ConfigKind.OWNERSHIP, OWNERSHIP_NAME)
    write(own, default.content + "# ours now\n")
    await history.observe_ownership(own)
    versions = await store.config_versions(ConfigKind.OWNERSHIP, OWNERSHIP_NAME)
    assert [v.content for v in versions] == [default.content, default.content + "# ours now\n"]


async def test_pick_previous_a_number_and_what_is_refused(
    history: ConfigHistory, store: FakeStore
) -> None:
    with pytest.raises(NotFound, match="no versions of mapping 'austin'"):
        await history.pick(MAPPING, "austin", 1)
    await store.record_config_version(MAPPING, "austin", V1, actor="a")
    with pytest.raises(NotFound, match="only version 1; there is no previous"):
        await history.pick(MAPPING, "austin", "previous")
    await store.record_config_version(MAPPING, "austin", V2, actor="a")
    current, chosen = await history.pick(MAPPING, "austin", "previous")
    assert (current.version, chosen.version) == (2, 1)
    assert (await history.pick(MAPPING, "austin", 2))[1].version == 2
    for bad in (0, 3, -1):
        with pytest.raises(NotFound, match=f"has no version {bad} \\(it has 1 to 2\\)"):
            await history.pick(MAPPING, "austin", bad)
    # what a dry run sees: a hand edit on disk counts as the next version, recorded or not
    current, chosen = await history.pick(MAPPING, "austin", "previous", on_disk=V1 + "# x\n")
    assert (current.version, current.content, chosen.version) == (3, V1 + "# x\n", 2)
    assert len(await store.config_versions(MAPPING, "austin")) == 2


async def test_replace_file_keeps_a_hand_edit_before_writing(
    tmp_path: Path, history: ConfigHistory, store: FakeStore
) -> None:
    path = tmp_path / "austin.yaml"
    await store.record_config_version(MAPPING, "austin", V1, actor="ann")
    path.write_bytes(b"mapping: austin\nversion: 9\n\xff\xfe broken\n")  # nobody read it yet
    made = await history.replace_file(
        MAPPING, "austin", path, V2, actor="bob", note="fix", doing="put"
    )
    assert path.read_text() == V2
    history_ = await store.config_versions(MAPPING, "austin")
    assert [(v.version, v.changed_by) for v in history_] == [(1, "ann"), (2, "hub"), (3, "bob")]
    assert "\ufffd" in history_[1].content  # kept, the undecodable bytes replaced
    assert history_[1].note == "found on disk before put; not UTF-8: undecodable bytes replaced"
    assert made == history_[2]


def test_write_atomically_keeps_the_bytes_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "austin.yaml"
    path.write_text("old")
    path.chmod(0o640)
    text = "mapping: austin\r\nversion: 1\r\n# ünï\n"
    write_atomically(path, text)
    assert path.read_bytes() == text.encode()
    assert path.stat().st_mode & 0o777 == 0o640
    write_atomically(tmp_path / "new" / "denver.yaml", "x: 1\n")
    assert (tmp_path / "new" / "denver.yaml").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["austin.yaml", "denver.yaml", "new"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "austin.yaml"
    path.write_text(V1)

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, V2)
    assert path.read_text() == V1
    assert [p.name for p in tmp_path.iterdir()] == ["austin.yaml"]


def test_check_mapping_loads_the_files_that_extend_it(tmp_path: Path) -> None:
    families = {"mls/reso": ResoConnectorSpec.family_mapping}
    (tmp_path / "texas.yaml").write_text("mapping: texas\nversion: 1\nextends: mls/reso\n")
    child = "mapping: austin\nversion: 1\nextends: texas\nfields: {AskPrice: ListPrice}\n"
    (tmp_path / "austin.yaml").write_text(child)
    (tmp_path / "broken.yaml").write_text("mapping: broken\nversion: 1\nextends: texas\nx: 1\n")
    registry = MappingRegistry(tmp_path, families)
    fine = "mapping: texas\nversion: 2\nextends: mls/reso\nlocal_prefixes: [TX_]\n"
    assert check_mapping(registry, "texas", fine) == ["austin"]  # broken was broken before
    clash = "mapping: texas\nversion: 2\nextends: mls/reso\nfields: {PriceAlias: ListPrice}\n"
    MappingRegistry(tmp_path, families).trial({"texas": clash}).load("texas")  # fine alone
    with pytest.raises(MappingError, match=r"mapping .austin.*already the target"):
        check_mapping(registry, "texas", clash)
    with pytest.raises(MappingError, match="family default"):
        check_mapping(registry, "mls/reso", fine)
    with pytest.raises(MappingError, match="name must match"):
        check_mapping(registry, "denver", fine)
    assert (tmp_path / "texas.yaml").read_text().endswith("mls/reso\n")  # nothing written
