"""Generate ``src/cadastre/contract/reso.py`` from the RESO Data Dictionary 2.0 metadata.

    python tools/gen_contract.py              # rewrite src/cadastre/contract/reso.py
    python tools/gen_contract.py --out FILE   # write FILE instead (tests compare it)
    python tools/gen_contract.py --check      # exit 1 when the committed file is stale

Inputs: ``<shared>/reso/dd-2.0/dd-2.0.json`` (``CADASTRE_SHARED_DIR``, default the ``shared``
folder beside the repository) and ``tools/contract_selection.yaml`` (which fields to carry).
Only facts are generated (names, types, lengths, lookup values, standard names): the DD's
definitions stay in shared/ because the RESO EULA does not let us redistribute them.
The output is written already formatted the way ``ruff format`` would, so it needs no formatter.
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic.alias_generators import to_pascal  # the base model's alias generator

ROOT = Path(__file__).resolve().parent.parent
SELECTION = ROOT / "tools" / "contract_selection.yaml"
TARGET = ROOT / "src" / "cadastre" / "contract" / "reso.py"
ENUM_PREFIX = "org.reso.metadata.enums."
LINE = 100
SCHEMA_VERSION = "1.0.0"  # default; an entity in the selection may set its own
# Attribute names pydantic's BaseModel already uses; a field by one of these names would shadow it.
RESERVED = {"copy", "dict", "json", "schema", "schema_json", "validate", "construct", "fields"}


def shared_dir() -> Path:
    return Path(os.environ.get("CADASTRE_SHARED_DIR", ROOT.parent / "shared")).resolve()


def snake(name: str) -> str:
    """``ListAOR`` -> ``list_aor``, ``MLSAreaMajor`` -> ``mls_area_major``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


def quote(text: str) -> str:
    if '"' in text and "'" not in text:
        return "'" + text.replace("\\", "\\\\") + "'"
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class FieldSpec:
    wire: str
    attribute: str
    annotation: str
    required: bool
    arguments: tuple[str, ...]  # Field(...) keyword arguments besides default


@dataclass(frozen=True)
class Lookup:
    name: str
    values: tuple[tuple[str, str], ...]  # (lookup value, standard name)


class Dictionary:
    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.version: str = data["version"]
        self.generated_on: str = data["generatedOn"]
        self.fields = {(f["resourceName"], f["fieldName"]): f for f in data["fields"]}
        self.lookups: dict[str, list[tuple[str, str]]] = {}
        for item in data["lookups"]:
            name = item["lookupName"].removeprefix(ENUM_PREFIX)
            annotations = {a["term"]: a["value"] for a in item.get("annotations", [])}
            standard = annotations.get("RESO.OData.Metadata.StandardName", item["lookupValue"])
            self.lookups.setdefault(name, []).append((item["lookupValue"], standard))


def python_type(field: dict[str, Any], used: dict[str, Lookup], dd: Dictionary) -> str:
    dd_type: str = field["type"]
    if dd_type.startswith(ENUM_PREFIX):
        name = dd_type.removeprefix(ENUM_PREFIX)
        # "Open" lookups without standard values (City, MlsStatus, ...) are plain strings.
        inner = "str"
        if name in dd.lookups:
            used[name] = Lookup(name, tuple(dd.lookups[name]))
            inner = name
        return f"list[{inner}]" if field.get("isCollection") else inner
    if dd_type == "Edm.Decimal":
        # DD 2.0's JSON types whole counts (BedroomsTotal, YearBuilt) as Decimal with scale 0;
        # its EDMX says Edm.Int64 for the same fields, so they are integers.
        return "int" if field.get("scale") == 0 else "Decimal"
    simple = {
        "Edm.String": "str",
        "Edm.Int32": "int",
        "Edm.Int64": "int",
        "Edm.Boolean": "bool",
        "Edm.Date": "date",
        "Edm.DateTimeOffset": "AwareDatetime",
    }
    if dd_type not in simple:
        raise SystemExit(f"{field['resourceName']}.{field['fieldName']}: unsupported {dd_type}")
    return simple[dd_type]


def field_spec(
    wire: str, annotation: str, *, required: bool, max_length: int | None, min_length: int = 0
) -> FieldSpec:
    attribute = snake(wire)
    if keyword.iskeyword(attribute) or attribute in RESERVED:
        raise SystemExit(f"{wire}: attribute name {attribute!r} is reserved")
    arguments: list[str] = []
    if to_pascal(attribute) != wire:
        arguments.append(f"alias={quote(wire)}")
    if min_length:
        arguments.append(f"min_length={min_length}")
    if max_length is not None:
        arguments.append(f"max_length={max_length}")
    return FieldSpec(wire, attribute, annotation, required, tuple(arguments))


def model_fields(
    entity: str, spec: dict[str, Any], dd: Dictionary, used: dict[str, Lookup]
) -> list[FieldSpec]:
    resource = spec["resource"]
    out: list[FieldSpec] = []
    for wire in spec["fields"]:
        field = dd.fields.get((resource, wire))
        if field is None:
            raise SystemExit(f"{entity}: {resource}.{wire} is not in the Data Dictionary")
        annotation = python_type(field, used, dd)
        max_length = field.get("maxLength") if annotation == "str" else None
        required = wire == spec["key"]
        out.append(field_spec(wire, annotation, required=required, max_length=max_length))
    out.extend(
        # Same constraints as the ids of platform.py, which these point to.
        field_spec(wire, "str", required=False, max_length=255, min_length=1)
        for wire in spec.get("cadastre_fields", [])
    )
    seen = [f.attribute for f in out]
    if len(seen) != len(set(seen)):
        raise SystemExit(f"{entity}: two fields map to one attribute")
    return out


def member_name(value: str) -> str:
    return snake(value).upper()


# ---------------------------------------------------------------------------------- emitting


def call_lines(head: str, arguments: list[str], indent: str) -> list[str]:
    """``head(args)`` laid out as ruff format would: one line, else args on one indented line,
    else one argument per line with a trailing comma."""
    one = f"{indent}{head}({', '.join(arguments)})"
    if len(one) <= LINE:
        return [one]
    inner = f"{indent}    {', '.join(arguments)}"
    if len(inner) <= LINE:
        return [f"{indent}{head}(", inner, f"{indent})"]
    return [f"{indent}{head}(", *(f"{indent}    {a}," for a in arguments), f"{indent})"]


def emit_field(field: FieldSpec) -> list[str]:
    annotation = field.annotation if field.required else f"{field.annotation} | None"
    head = f"    {field.attribute}: {annotation}"
    if field.required:
        if not field.arguments:
            return [head]
        return call_lines(f"{head.strip()} = Field", list(field.arguments), "    ")
    if not field.arguments:
        return [f"{head} = None"]
    return call_lines(f"{head.strip()} = Field", ["default=None", *field.arguments], "    ")


def emit_enum(lookup: Lookup) -> list[str]:
    lines = [f"class {lookup.name}(StrEnum):"]
    names = [member_name(value) for value, _ in lookup.values]
    if len(names) != len(set(names)):
        raise SystemExit(f"lookup {lookup.name}: two values give one member name")
    lines += [f"    {n} = {quote(v)}" for n, (v, _) in zip(names, lookup.values, strict=True)]
    return lines


def emit_standard_names(lookups: list[Lookup]) -> list[str]:
    lines = [
        "# StandardName (the display name) of each lookup value where it differs from the value.",
        "STANDARD_NAMES: dict[type[StrEnum], dict[str, str]] = {",
    ]
    for lookup in lookups:
        differing = [(v, s) for v, s in lookup.values if v != s]
        if not differing:
            lines.append(f"    {lookup.name}: {{}},")
            continue
        lines.append(f"    {lookup.name}: {{")
        for value, standard in differing:
            entry = f"        {quote(value)}: {quote(standard)},"
            if len(entry) > LINE:
                entry = f"        {quote(value)}: (\n            {quote(standard)}\n        ),"
            lines.append(entry)
        lines.append("    },")
    lines.append("}")
    return lines


def emit_model(entity: str, spec: dict[str, Any], fields: list[FieldSpec]) -> list[str]:
    cadastre = sorted(spec.get("cadastre_fields", []))
    if len(f'    """{spec["doc"]}"""') > LINE:
        raise SystemExit(f"{entity}: doc is longer than a line")
    lines = [
        f"class {entity}(ResoModel):",
        f'    """{spec["doc"]}"""',
        "",
        f'    entity_name: ClassVar[str] = "{entity}"',
        f'    schema_version: ClassVar[str] = "{spec.get("schema_version", SCHEMA_VERSION)}"',
        f'    key_field: ClassVar[str | None] = "{spec["key"]}"',
        f'    reso_resource: ClassVar[str] = "{spec["resource"]}"',
    ]
    if cadastre:
        names = ", ".join(quote(c) for c in cadastre)
        lines.append(f"    cadastre_fields: ClassVar[frozenset[str]] = frozenset({{{names}}})")
    lines.append("")
    for field in fields:
        lines += emit_field(field)
    return lines


def render(dd: Dictionary, selection: dict[str, Any], dd_file: str) -> str:
    used: dict[str, Lookup] = {}
    models = {entity: model_fields(entity, spec, dd, used) for entity, spec in selection.items()}
    clash = set(used) & set(selection)
    if clash:
        raise SystemExit(f"lookup names clash with entity names: {sorted(clash)}")
    lookups = [used[name] for name in sorted(used)]
    annotations = {f.annotation for fields in models.values() for f in fields}
    count = sum(len(fields) for fields in models.values())

    out = [
        '"""RESO Data Dictionary part of the canonical contract: lookups and RESO-named models.',
        "",
        f"GENERATED by ``python tools/gen_contract.py`` from RESO Data Dictionary {dd.version}",
        f"({dd_file}, generated {dd.generated_on}) and ``tools/contract_selection.yaml``.",
        "Do not edit by hand: change the selection and regenerate. Long because it is generated:",
        f"{len(lookups)} lookups and {len(models)} models with {count} fields in all.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    stdlib = []
    if "date" in annotations:
        stdlib.append("from datetime import date")
    if "Decimal" in annotations:
        stdlib.append("from decimal import Decimal")
    stdlib += ["from enum import StrEnum", "from typing import ClassVar"]
    pydantic_names = ["Field"]
    if "AwareDatetime" in annotations:
        pydantic_names.insert(0, "AwareDatetime")
    out += [*stdlib, "", f"from pydantic import {', '.join(pydantic_names)}", ""]
    out += ["from cadastre.contract.base import CanonicalModel", "", ""]
    out += [
        "class ResoModel(CanonicalModel):",
        '    """A canonical model carrying fields of one RESO resource under their DD names."""',
        "",
        "    reso_resource: ClassVar[str]",
        "    # Cadastre's own reference fields (not RESO), which the reference test skips.",
        "    cadastre_fields: ClassVar[frozenset[str]] = frozenset()",
        "",
        "",
    ]
    for lookup in lookups:
        out += [*emit_enum(lookup), "", ""]
    out += [*emit_standard_names(lookups), "", ""]
    for entity, spec in selection.items():
        out += [*emit_model(entity, spec, models[entity]), "", ""]
    while out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def generate() -> str:
    dd_path = shared_dir() / "reso" / "dd-2.0" / "dd-2.0.json"
    if not dd_path.is_file():
        raise SystemExit(f"RESO metadata not found at {dd_path} (set CADASTRE_SHARED_DIR)")
    selection = yaml.safe_load(SELECTION.read_text(encoding="utf-8"))
    return render(Dictionary(dd_path), selection, dd_path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale; run: python tools/gen_contract.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
