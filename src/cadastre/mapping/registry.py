"""The mapping registry: a folder of per-system mapping files (a setting), on top of the family
defaults that vendor packages ship. ``load("austin-mls")`` reads ``<folder>/austin-mls.yaml``,
follows its ``extends`` chain and compiles the result into a ``RecordMapper``.

The folder is outside every connector package on purpose: onboarding an MLS adds a file here and
touches no code. The families are handed in by ``bootstrap`` (mapping cannot import connectors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from cadastre.config import describe_validation_error, load_yaml
from cadastre.errors import MappingError
from cadastre.mapping.mapper import RecordMapper
from cadastre.mapping.spec import MappingSpec

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

_MAX_DEPTH = 8


class MappingRegistry:
    def __init__(self, folder: Path, families: Mapping[str, Path]) -> None:
        self.folder = folder
        self._families = dict(families)

    def families(self) -> list[str]:
        """The family defaults' names (``mls/reso``), which files can extend."""
        return sorted(self._families)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.yaml"))

    def load(self, name: str) -> RecordMapper:
        return RecordMapper(self.resolve(name), source=self._path(name).name)

    def resolve(self, name: str) -> MappingSpec:
        chain: list[MappingSpec] = []
        current: str | None = name
        while current is not None:
            if len(chain) >= _MAX_DEPTH or current in {s.mapping for s in chain}:
                raise MappingError(f"mapping {name!r}: 'extends' loops or nests too deep")
            spec = self._read(current)
            chain.append(spec)
            current = spec.extends
        resolved = chain[-1]
        for spec in reversed(chain[:-1]):
            resolved = spec.over(resolved)
        return resolved

    def _path(self, name: str) -> Path:
        if name in self._families:
            return self._families[name]
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise MappingError(f"mapping name {name!r} is not a file name in the registry")
        return self.folder / f"{name}.yaml"

    def _read(self, name: str) -> MappingSpec:
        path = self._path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            known = ", ".join([*self._families, *self.names()]) or "none"
            raise MappingError(
                f"mapping {name!r} not found: no {path.name} in {self.folder} (known: {known})"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"mapping {name!r}: cannot read {path.name}: {exc}") from None
        try:
            data = load_yaml(text, source=path.name)
        except yaml.YAMLError as exc:
            raise MappingError(f"mapping {name!r}: {path.name} is not valid YAML: {exc}") from None
        try:
            spec = MappingSpec.model_validate(data)
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            raise MappingError(f"mapping {name!r} ({path.name}): {problems}") from None
        if name not in self._families and spec.mapping != name:
            raise MappingError(
                f"{path.name} says 'mapping: {spec.mapping}'; a registry file's name must match"
            )
        return spec
