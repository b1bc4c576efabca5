"""The checks of a resolved mapping's newer keys against the contract (``transforms``,
``defaults``, ``payloads``, ``required``), each problem named by its key path so that the
``MappingError`` points at the line to fix. ``RecordMapper`` runs them when it compiles a file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadastre.contract import validate_fields
from cadastre.errors import ContractError
from cadastre.mapping.transforms import Step, compile_steps

if TYPE_CHECKING:
    from cadastre.mapping.spec import MappingSpec


def check_rules(
    spec: MappingSpec, entity: str, canonical: frozenset[str], wire: frozenset[str]
) -> tuple[dict[str, list[tuple[str, Step]]], list[str]]:
    """The compiled transforms (canonical field -> steps) and every problem found.
    ``canonical`` excludes ``LocalFields``; ``wire`` is every wire name, the bag included."""
    problems: list[str] = []
    transforms: dict[str, list[tuple[str, Step]]] = {}
    for field, steps in spec.transforms.items():
        if field not in canonical:
            problems.append(f"transforms.{field}: not a field of {entity}")
            continue
        compiled, wrong = compile_steps(steps)
        problems.extend(f"transforms.{field}{problem}" for problem in wrong)
        transforms[field] = compiled
    for field, value in spec.defaults.items():
        if field not in canonical:
            problems.append(f"defaults.{field}: not a field of {entity}")
            continue
        problems.extend(_check_value(entity, field, value))
    for payload, rule in spec.payloads.items():
        which = "include" if rule.include is not None else "exclude"
        problems.extend(
            f"payloads.{payload}.{which}: {name!r} is not a field of {entity}"
            for name in (rule.include or rule.exclude or [])
            if name not in wire
        )
    problems.extend(
        f"required: {name!r} is not a field of {entity}"
        for name in spec.required
        if name not in canonical
    )
    return transforms, problems


def _check_value(entity: str, field: str, value: Any) -> list[str]:
    try:
        validate_fields(entity, {field: value})
    except ContractError as exc:
        detail = str(exc).split(": ", 2)[-1]  # drop "invalid Listing fields: <field>"
        return [f"defaults.{field}: {detail}"]
    return []
