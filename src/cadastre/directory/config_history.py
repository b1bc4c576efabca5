"""Versions of the global configuration files: the mapping registry folder's files and the
ownership registry (issue 9; connections keep theirs in ``connection_versions``).

A version is made
- when the hub reads a file whose text is not the latest version, so a hand edit is versioned
  when it is first seen. The ``MappingRegistry`` tells ``seen_mapping`` of every registry file
  of a mapping it compiled (with the text it read: nothing is read twice); bootstrap tells
  ``seen_ownership`` of the registry it loads. Recording is a store call, so what is seen waits
  in a queue until ``flush()`` (``Hub.open_source`` and bootstrap flush);
- by ``replace_file``, which ``cadastre mappings put``, ``ownership put`` and ``rollback`` call
  once they have validated the new text: what is on disk is kept first (when it was never
  versioned, as a hand edit not yet seen), then the new text is written atomically (a temporary
  file in the same folder, fsync, rename) and recorded.

The sync path pays one ``stat`` per file: the text is hashed and queued only when the file's
(mtime, size, inode) differs from the last check in this process. A stat younger than
``RACY_SECONDS`` is not trusted (git's "racily clean" files: a rewrite within the file system's
time granularity can keep mtime and size), so such a file's text is hashed and compared until
its stat settles. The store returns the latest version unchanged when the hash is the same, so a
queued text that is not new costs a look-up and makes no version.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cadastre.errors import CadastreError, ConfigurationError, NotFound
from cadastre.ownership import default_registry_text
from cadastre.ports import Clock, ConfigKind, ConfigVersion, Store

if TYPE_CHECKING:
    from cadastre.mapping import MappingRegistry

OWNERSHIP_NAME = "ownership"  # there is one ownership registry per deployment
SEEN_NOTE = "found on disk"  # a hand edit, or the first read of a file
RACY_SECONDS = 2.0
PREVIOUS = "previous"

_log = logging.getLogger("cadastre.config")

Stat = tuple[int, int, int]  # mtime_ns, size, inode


@dataclass(frozen=True)
class _Seen:
    stat: Stat | None
    sha: str
    settled: bool  # the stat is old enough to say "unchanged" alone


def _stat(path: Path | None) -> tuple[Stat | None, bool]:
    if path is None:
        return None, False
    try:
        st = path.stat()
    except OSError:
        return None, False
    # File times are the file system's, so they are compared with the real time, not the hub's
    # clock (a FakeClock in tests would say every file is from the future).
    settled = time.time() - st.st_mtime >= RACY_SECONDS
    return (st.st_mtime_ns, st.st_size, st.st_ino), settled


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ConfigHistory:
    def __init__(self, store: Store, clock: Clock, *, actor: str = "hub") -> None:
        self._store = store
        self._clock = clock
        self._actor = actor  # who a version is by when it was found on disk
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._pending: dict[tuple[str, str], list[str]] = defaultdict(list)
        # one flush at a time: two syncs flushing at once could record a file's two texts in
        # the wrong order, leaving the older as the latest version
        self._flushing = asyncio.Lock()

    # -- reading: what the hub saw -------------------------------------------------------

    def seen_mapping(self, name: str, path: Path, text: str) -> None:
        """The ``MappingRegistry`` observer: registry file ``name`` was read as ``text``."""
        self._saw(ConfigKind.MAPPING, name, path, text)

    def seen_ownership(self, path: Path | None, text: str) -> None:
        """The ownership registry was loaded from ``path`` (None: the packaged default)."""
        self._saw(ConfigKind.OWNERSHIP, OWNERSHIP_NAME, path, text)

    def _saw(self, kind: str, name: str, path: Path | None, text: str) -> None:
        key = (kind, name)
        stat, settled = _stat(path)
        last = self._seen.get(key)
        if last is not None and stat is not None and last.stat == stat and last.settled:
            return  # the hot path: unchanged since it was last checked
        sha = _sha(text)
        if last is not None and last.sha == sha and last.stat == stat:
            self._seen[key] = _Seen(stat, sha, settled)
            return
        self._seen[key] = _Seen(stat, sha, settled)
        queued = self._pending[key]
        if not queued or queued[-1] != text:
            queued.append(text)

    async def observe_ownership(self, path: Path | None) -> None:
        """Version the ownership registry the hub has just loaded from ``path`` (None: the
        packaged default) if it changed; bootstrap calls it once the store is open."""
        try:
            text = await asyncio.to_thread(
                default_registry_text if path is None else lambda: path.read_text("utf-8")
            )
        except (OSError, UnicodeDecodeError) as exc:  # it was loaded a moment ago
            _log.warning("could not read %s to version it: %s", path, exc)
            return
        self.seen_ownership(path, text)
        await self.flush()

    async def flush(self) -> list[ConfigVersion]:
        """Record what was seen since the last flush; the versions it made or found. A store
        that fails keeps the rest queued for the next flush (a warning says so): versioning
        never stops a sync."""
        if not self._pending:
            return []  # the hot path: nothing seen, no lock taken
        made: list[ConfigVersion] = []
        async with self._flushing:
            while self._pending:
                key, texts = next(iter(self._pending.items()))
                text = texts.pop(0)
                if not texts:
                    del self._pending[key]
                try:
                    made.append(await self.record(*key, text, actor=self._actor, note=SEEN_NOTE))
                except CadastreError as exc:
                    self._pending.setdefault(key, []).insert(0, text)
                    _log.warning("could not version %s %r (tried again at the next read): %s",
                                 key[0], key[1], exc)  # fmt: skip
                    break
        return made

    # -- versions ------------------------------------------------------------------------

    async def record(
        self, kind: str, name: str, text: str, *, actor: str, note: str = ""
    ) -> ConfigVersion:
        return await self._store.record_config_version(kind, name, text, actor=actor, note=note)

    async def versions(self, kind: str, name: str) -> list[ConfigVersion]:
        return await self._store.config_versions(kind, name)

    async def pick(
        self, kind: str, name: str, target: int | str, *, on_disk: str | None = None
    ) -> tuple[ConfigVersion, ConfigVersion]:
        """``(current, chosen)``: the latest version and the one ``target`` names, a number or
        ``previous`` (the version before the current one). ``on_disk``: the file's text, which
        counts as the next version when it is not the latest (a dry run, which records
        nothing, sees what a rollback would). ``NotFound`` says what exists."""
        versions = await self.versions(kind, name)
        if on_disk is not None and (not versions or versions[-1].sha256 != _sha(on_disk)):
            versions.append(ConfigVersion(
                kind, name, len(versions) + 1, on_disk, _sha(on_disk), self._actor,
                self._clock.now(), "on disk, not versioned yet",
            ))  # fmt: skip
        what = f"{kind} {name!r}" if kind == ConfigKind.MAPPING else kind
        if not versions:
            raise NotFound(f"no versions of {what} are recorded")
        current = versions[-1]
        if target == PREVIOUS:
            if len(versions) < 2:
                raise NotFound(f"{what} has only version 1; there is no previous version")
            return current, versions[-2]
        if not isinstance(target, int) or not 1 <= target <= current.version:
            raise NotFound(f"{what} has no version {target} (it has 1 to {current.version})")
        return current, versions[target - 1]

    # -- writing -------------------------------------------------------------------------

    async def keep_found(self, kind: str, name: str, path: Path, *, doing: str) -> str | None:
        """Version what ``path`` holds now, unless it is the latest version already (a hand
        edit nobody has read yet would otherwise be lost); its text, or None when there is no
        file. Bytes that are not UTF-8 are kept replaced, and the note says so."""
        found = await asyncio.to_thread(_read_as_found, path)
        if found is None:
            return None
        text, undecodable = found
        extra = "; not UTF-8: undecodable bytes replaced" if undecodable else ""
        await self.record(kind, name, text, actor=self._actor,
                          note=f"found on disk before {doing}{extra}")  # fmt: skip
        return text

    async def read_found(self, path: Path) -> str | None:
        """What ``path`` holds now (None: no file), as ``keep_found`` would keep it."""
        found = await asyncio.to_thread(_read_as_found, path)
        return None if found is None else found[0]

    async def replace_file(
        self, kind: str, name: str, path: Path, text: str, *, actor: str, note: str, doing: str
    ) -> ConfigVersion:
        """Keep what ``path`` holds (unless that is versioned already), write ``text`` there
        atomically, and record it. ``text`` has been validated by the caller; ``doing`` says
        what this is for the version of what was on disk ("put", "rollback")."""
        await self.keep_found(kind, name, path, doing=doing)
        try:
            await asyncio.to_thread(write_atomically, path, text)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigurationError(f"cannot write {path}: {reason}") from None
        made = await self.record(kind, name, text, actor=actor, note=note)
        self._seen.pop((kind, name), None)  # the next read checks the new file afresh
        return made


def _read_as_found(path: Path) -> tuple[str, bool] | None:
    """The file's text (a missing one is None); bytes that are not UTF-8 are replaced, so even
    a broken file is kept before it is overwritten."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a
    part: a temporary file in the same folder (so the rename stays on one file system), flushed
    to disk, then renamed over the old one, whose permissions it keeps. Bytes are written as
    given (no newline translation). A new file gets mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # mkstemp's 0600 would hide a new registry file from other users
    # a name the registry does not list (it reads *.yaml) while the file is being written
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(handle, data) :]
        os.fsync(handle)
        os.close(handle)
        handle = -1
        temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        if handle >= 0:
            os.close(handle)
        temporary.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself durable (not on every platform)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def check_mapping(registry: MappingRegistry, name: str, text: str) -> list[str]:
    """Validate ``text`` as registry file ``name`` as the hub would load it, with every file
    that extends it (directly or not): ``MappingError`` names the first that fails. A file that
    fails today already is not held against ``text``. Returns the dependants checked."""
    today, trial = registry.trial(), registry.trial({name: text})  # neither versions a thing
    trial.load(name)
    checked = []
    for other in trial.names():
        if other == name:
            continue
        try:
            if name not in today.lineage(other):
                continue
            today.load(other)
        except CadastreError:
            continue  # broken or unrelated before this change: not this file's to answer for
        trial.load(other)
        checked.append(other)
    return checked
