"""Reading a registry file: YAML -> ``RegistryFile`` -> ``OwnershipRegistry``, with every error
turned into an ``OwnershipRegistryError`` that names the file and, where it can, the line."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from cadastre.config import load_yaml
from cadastre.errors import OwnershipRegistryError
from cadastre.ownership.catalogue import FieldCatalogue
from cadastre.ownership.registry import OwnershipRegistry
from cadastre.ownership.spec import RegistryFile

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_NAME = "default.yaml"

Catalogue = FieldCatalogue | Mapping[str, frozenset[str]]


def default_registry_text() -> str:
    return resources.files("cadastre.ownership").joinpath(DEFAULT_NAME).read_text("utf-8")


def load_registry(
    path: Path | None = None, *, catalogue: Catalogue | None = None
) -> OwnershipRegistry:
    """Load ``path``, or the packaged default when it is None. The catalogue defaults to the
    canonical contract. A missing file raises ``FileNotFoundError``; everything else that is
    wrong (a directory, a file that is not UTF-8, bad YAML, a bad registry) raises
    ``OwnershipRegistryError``."""
    if path is None:
        return parse_registry(default_registry_text(), catalogue=catalogue, source=DEFAULT_NAME)
    try:
        text = path.read_text("utf-8")
    except IsADirectoryError:
        raise OwnershipRegistryError(f"{path}: is a directory, not a registry file") from None
    except UnicodeDecodeError as exc:
        raise OwnershipRegistryError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8"
        ) from None
    return parse_registry(text, catalogue=catalogue, source=str(path))


def parse_registry(
    text: str, *, catalogue: Catalogue | None = None, source: str = "<registry>"
) -> OwnershipRegistry:
    try:
        # strict: a key given twice (two 'owner:' in a rule, two 'rules:' sections) is an error,
        # not a silent last-one-wins; so the rules _rule_lines finds are the rules loaded
        data = load_yaml(text, source=source)
        lines = _rule_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OwnershipRegistryError(f"{source}: not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise OwnershipRegistryError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise OwnershipRegistryError(f"{source}: expected a mapping with version, systems, rules")
    try:
        spec = RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise OwnershipRegistryError(f"{source}: {_describe(exc, lines)}") from None
    chosen = FieldCatalogue.from_contract() if catalogue is None else catalogue
    return OwnershipRegistry.build(spec, chosen, source=source, lines=lines)


def _rule_lines(text: str) -> dict[int, int]:
    """1-based rule index -> 1-based line of that rule, from the YAML node tree."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return {}
    rules = [v for k, v in root.value if k.value == "rules" and isinstance(v, yaml.SequenceNode)]
    if not rules:
        return {}
    # the last section is the one a YAML loader keeps (load_yaml refuses a second one anyway)
    return {i: item.start_mark.line + 1 for i, item in enumerate(rules[-1].value, start=1)}


def _describe(exc: ValidationError, lines: Mapping[int, int]) -> str:
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1] + 1
            rest = ".".join(str(part) for part in loc[2:])
            line = lines.get(index)
            where = (
                f"rule {index}" + (f" (line {line})" if line else "") + (f" {rest}" if rest else "")
            )
        problems.append(f"{where}: {error['msg']}")
    listing = "\n".join(f"  - {p}" for p in problems)
    return f"invalid ownership registry:\n{listing}"
