"""``FakeStore``'s versions of the global configuration files (cross-tenant, like its tenants):
mixed into ``FakeStore``, whose committed state holds them. Each call is its own transaction,
as the SQL stores' are, and calls are serialised, so concurrent recordings of one text make one
version here too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadastre.ports import ConfigVersion
from cadastre.store.repositories.config_versions import config_sha256

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from cadastre.ports import Clock
    from cadastre.testing.fakes import _State


class FakeConfigVersions:
    clock: Clock
    _state: _State  # the FakeStore's committed state

    def _serialised(self) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def record_config_version(
        self, kind: str, name: str, content: str, *, actor: str, note: str = ""
    ) -> ConfigVersion:
        sha = config_sha256(content)
        async with self._serialised():
            versions = self._state.config_versions.get((kind, name), ())
            if versions and versions[-1].sha256 == sha:
                return versions[-1]
            made = ConfigVersion(
                kind, name, len(versions) + 1, content, sha, actor, self.clock.now(), note
            )
            # replaced, never appended in place: units of work share the tuples (copy-on-write)
            self._state.config_versions[(kind, name)] = (*versions, made)
            return made

    async def config_versions(self, kind: str, name: str) -> list[ConfigVersion]:
        return list(self._state.config_versions.get((kind, name), ()))

    async def config_version(self, kind: str, name: str, version: int) -> ConfigVersion | None:
        versions = self._state.config_versions.get((kind, name), ())
        return versions[version - 1] if 1 <= version <= len(versions) else None
