"""The RESO side of the contract against the Data Dictionary 2.0 reference metadata in shared/.

Names, types, lengths, lookup values and standard names are checked here rather than trusted to
the generator, so a hand edit of ``reso.py`` or a generator bug cannot drift from the DD unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args, get_origin

import annotated_types
import pytest
from pydantic import AwareDatetime

from cadastre.contract import ENTITY_MODELS, ResoModel, display_name, reso

pytestmark = pytest.mark.reference

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENUMS = "org.reso.metadata.enums."
SIMPLE = {
    "Edm.String": str,
    "Edm.Int32": int,
    "Edm.Int64": int,
    "Edm.Boolean": bool,
    "Edm.Date": date,
    "Edm.DateTimeOffset": AwareDatetime,
}
RESO_MODELS = [m for m in ENTITY_MODELS.values() if issubclass(m, ResoModel)]
RESO_ENUMS = [
    value
    for value in vars(reso).values()
    if isinstance(value, type) and issubclass(value, StrEnum) and value.__module__ == reso.__name__
]


class DataDictionary:
    def __init__(self, data: dict[str, Any]) -> None:
        self.fields = {(f["resourceName"], f["fieldName"]): f for f in data["fields"]}
        self.lookups: dict[str, list[tuple[str, str]]] = {}
        for item in data["lookups"]:
            terms = {a["term"]: a["value"] for a in item["annotations"]}
            standard = terms["RESO.OData.Metadata.StandardName"]
            name = item["lookupName"].removeprefix(ENUMS)
            self.lookups.setdefault(name, []).append((item["lookupValue"], standard))


@pytest.fixture(scope="module")
def dd(shared_dir: Path) -> DataDictionary:
    path = shared_dir / "reso" / "dd-2.0" / "dd-2.0.json"
    return DataDictionary(json.loads(path.read_text(encoding="utf-8")))


def _expected_type(field: dict[str, Any], dd: DataDictionary) -> tuple[Any, bool]:
    """(element type, is a collection) the contract must use for a DD field."""
    kind: str = field["type"]
    if kind.startswith(ENUMS):
        name = kind.removeprefix(ENUMS)
        # An "Open" lookup with no standard values is free text.
        element: Any = getattr(reso, name) if name in dd.lookups else str
        return element, bool(field.get("isCollection"))
    if kind == "Edm.Decimal":
        return (int if field.get("scale") == 0 else Decimal), False
    return SIMPLE[kind], False


def _actual_type(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        assert len(args) == 1, annotation
        annotation = args[0]
    if get_origin(annotation) is list:
        return get_args(annotation)[0], True
    return annotation, False


def _max_length(metadata: list[Any]) -> int | None:
    lengths = [m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)]
    return lengths[0] if lengths else None


@pytest.mark.parametrize("model", RESO_MODELS, ids=lambda m: m.entity_name)
def test_fields_match_the_data_dictionary(model: type[ResoModel], dd: DataDictionary) -> None:
    problems = []
    checked = 0
    for attribute, info in model.model_fields.items():
        wire = info.alias or attribute
        if wire == "LocalFields" or wire in model.cadastre_fields:
            continue
        field = dd.fields.get((model.reso_resource, wire))
        if field is None:
            problems.append(f"{wire}: not a field of RESO {model.reso_resource}")
            continue
        checked += 1
        expected = _expected_type(field, dd)
        actual = _actual_type(info.annotation)
        if actual != expected:
            problems.append(f"{wire}: {actual} but the DD says {field['type']} -> {expected}")
        want_length = field.get("maxLength") if expected == (str, False) else None
        if _max_length(info.metadata) != want_length:
            problems.append(f"{wire}: max_length {_max_length(info.metadata)}, DD {want_length}")
    assert not problems, "\n".join(problems)
    assert checked >= 20


@pytest.mark.parametrize("enum", RESO_ENUMS, ids=lambda e: e.__name__)
def test_enumerations_are_the_dd_lookups(enum: type[StrEnum], dd: DataDictionary) -> None:
    lookup = dd.lookups[enum.__name__]
    assert [m.value for m in enum] == [value for value, _ in lookup]
    assert [display_name(m) for m in enum] == [standard for _, standard in lookup]


def test_every_lookup_the_models_use_is_generated(dd: DataDictionary) -> None:
    used = {
        field["type"].removeprefix(ENUMS)
        for model in RESO_MODELS
        for wire in model.wire_fields()
        if (field := dd.fields.get((model.reso_resource, wire))) and field["isEnumeration"]
    }
    generated = {enum.__name__ for enum in RESO_ENUMS}
    assert generated == used & dd.lookups.keys()


def test_generated_module_is_up_to_date(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "reso.py"
    subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tools" / "gen_contract.py"), "--out", str(out)],
        check=True,
        env={**os.environ, "CADASTRE_SHARED_DIR": str(shared_dir)},
        timeout=60,
    )
    committed = PROJECT_ROOT / "src" / "cadastre" / "contract" / "reso.py"
    assert out.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8"), (
        "src/cadastre/contract/reso.py is stale; run: python tools/gen_contract.py"
    )
