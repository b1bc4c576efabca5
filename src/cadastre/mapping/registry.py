"""The mapping registry: a folder of per-system mapping files (a setting), on top of the family
defaults that vendor packages ship. ``load("austin-mls")`` reads ``<folder>/austin-mls.yaml``,
follows its ``extends`` chain and compiles the result into a ``RecordMapper``.

The folder is outside every connector package on purpose: onboarding an MLS adds a file here and
touches no code. The families are handed in by ``bootstrap`` (mapping cannot import connectors).

An ``observer`` hears of every registry file of a mapping ``load`` compiled, with the text it
read, so the hub versions hand edits when it first uses them (``directory.config_history``)
without reading any file twice; a file that does not compile is not reported. It is called
synchronously and must be cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import yaml
from pydantic import ValidationError

from cadastre.config import describe_validation_error, load_yaml
from cadastre.errors import MappingError
from cadastre.mapping.mapper import RecordMapper
from cadastre.mapping.spec import MappingSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    # registry name, its file, the text read
    Observer = Callable[[str, Path, str], None]

_MAX_DEPTH = 8


class _Read(NamedTuple):
    name: str
    spec: MappingSpec
    path: Path
    text: str


class MappingRegistry:
    def __init__(
        self, folder: Path, families: Mapping[str, Path], *, observer: Observer | None = None
    ) -> None:
        self.folder = folder
        self._families = dict(families)
        self.observer = observer
        self._texts: dict[str, str] = {}  # registry name -> text read instead of its file

    def trial(self, texts: Mapping[str, str] | None = None) -> MappingRegistry:
        """This registry as it would be with ``texts`` (name -> text) in place of those files,
        which need not exist: what a new file is checked against, with every file that extends
        it, before anything is written. It reports to no observer."""
        for name in texts or {}:
            if name in self._families:
                raise MappingError(f"{name!r} is a family default, shipped with its connector")
            self._path(name)  # a name that is no file name is refused here
        trial = MappingRegistry(self.folder, self._families)
        trial._texts = {**self._texts, **(texts or {})}
        return trial

    def families(self) -> list[str]:
        """The family defaults' names (``mls/reso``), which files can extend."""
        return sorted(self._families)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return sorted(self._texts)
        return sorted({*(p.stem for p in self.folder.glob("*.yaml")), *self._texts})

    def load(self, name: str) -> RecordMapper:
        chain = self._chain(name)
        mapper = RecordMapper(_merged(chain), source=self._path(name).name)
        if self.observer is not None:
            for read in chain:
                if read.name not in self._families:
                    self.observer(read.name, read.path, read.text)
        return mapper

    def lineage(self, name: str) -> list[str]:
        """``name`` and every file its ``extends`` chain reads, itself first (a family last)."""
        return [read.name for read in self._chain(name)]

    def resolve(self, name: str) -> MappingSpec:
        return _merged(self._chain(name))

    def _chain(self, name: str) -> list[_Read]:
        chain: list[_Read] = []
        current: str | None = name
        while current is not None:
            if len(chain) >= _MAX_DEPTH or current in {r.spec.mapping for r in chain}:
                raise MappingError(f"mapping {name!r}: 'extends' loops or nests too deep")
            read = self._read(current)
            chain.append(read)
            current = read.spec.extends
        return chain

    def _path(self, name: str) -> Path:
        if name in self._families:
            return self._families[name]
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise MappingError(f"mapping name {name!r} is not a file name in the registry")
        return self.folder / f"{name}.yaml"

    def _read(self, name: str) -> _Read:
        path = self._path(name)
        try:
            text = self._texts[name] if name in self._texts else path.read_text(encoding="utf-8")
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
        return _Read(name, spec, path, text)


def _merged(chain: list[_Read]) -> MappingSpec:
    resolved = chain[-1].spec
    for read in reversed(chain[:-1]):
        resolved = read.spec.over(resolved)
    return resolved
