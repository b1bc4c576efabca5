"""JSON Schema of every canonical entity, and the compatibility diff between two schema folders.

``export_json_schemas`` writes ``<Entity>.json`` (wire names, sorted keys, one trailing newline) so
that the committed ``schemas/v1/`` changes only when the contract does. ``diff_schemas`` compares
two such folders field by field, following ``$ref`` into ``$defs`` so that a lookup value removed
from an enumeration shows on the field that uses it. A change is breaking when a reader or writer
of the old schema can meet data the new one rejects, or miss data it relied on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadastre.contract.registry import ENTITY_MODELS
from cadastre.errors import ContractError

if TYPE_CHECKING:
    from pathlib import Path

    from cadastre.contract.base import CanonicalModel

SCHEMA_MAJOR = "v1"
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated"})
# Constraints that narrow a value when they appear or move in their direction.
_UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")
_LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems")
_EXACT = ("pattern", "format")


def schema_id(entity: str) -> str:
    # A URN rather than a URL: the schemas are not served from any host.
    return f"urn:cadastre:schema:{SCHEMA_MAJOR}:{entity}"


def json_schema(model: type[CanonicalModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)  # generated from the wire name ("Listprice"): noise in diffs
    schema["$id"] = schema_id(model.entity_name)
    schema["x-entity"] = model.entity_name
    schema["x-schema-version"] = model.schema_version
    schema["x-key-field"] = model.key_field
    return schema


def render_schema(model: type[CanonicalModel]) -> str:
    return json.dumps(json_schema(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_json_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entity, model in ENTITY_MODELS.items():
        path = out_dir / f"{entity}.json"
        path.write_text(render_schema(model), encoding="utf-8")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class SchemaChange:
    entity: str
    field: str  # wire name; "" for a change to the entity as a whole
    change: str
    breaking: bool

    @property
    def compatibility(self) -> str:
        return "breaking" if self.breaking else "compatible"


def diff_schemas(old_dir: Path, new_dir: Path) -> list[SchemaChange]:
    old, new = _load(old_dir), _load(new_dir)
    changes = [SchemaChange(e, "", "entity removed", True) for e in sorted(old.keys() - new.keys())]
    changes += [SchemaChange(e, "", "entity added", False) for e in sorted(new.keys() - old.keys())]
    for entity in sorted(old.keys() & new.keys()):
        changes += _diff_entity(entity, old[entity], new[entity])
    return changes


def _load(folder: Path) -> dict[str, dict[str, Any]]:
    if not folder.is_dir():
        raise ContractError(f"schema folder not found: {folder}")
    out = {}
    for path in sorted(folder.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[schema.get("x-entity", path.stem)] = schema
    return out


def _diff_entity(entity: str, old: dict[str, Any], new: dict[str, Any]) -> list[SchemaChange]:
    out: list[SchemaChange] = []
    if old.get("x-schema-version") != new.get("x-schema-version"):
        version = f"schema version {old.get('x-schema-version')} -> {new.get('x-schema-version')}"
        out.append(SchemaChange(entity, "", version, breaking=False))
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    out += [
        SchemaChange(entity, name, "field removed", breaking=True)
        for name in sorted(old_props.keys() - new_props.keys())
    ]
    for name in sorted(new_props.keys() - old_props.keys()):
        required = name in new_req
        text = "new required field" if required else "optional field added"
        out.append(SchemaChange(entity, name, text, breaking=required))
    for name in sorted(old_props.keys() & new_props.keys()):
        if name in new_req and name not in old_req:
            out.append(SchemaChange(entity, name, "became required", breaking=True))
        elif name in old_req and name not in new_req:
            out.append(SchemaChange(entity, name, "no longer required", breaking=False))
        out += [
            SchemaChange(entity, name, text, breaking)
            for text, breaking in _compare(
                old_props[name], new_props[name], old.get("$defs", {}), new.get("$defs", {})
            )
        ]
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema accepts, each one JSON type, annotations dropped."""
    node = _resolve(node, defs)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [branch for sub in node[key] for branch in _branches(sub, defs)]
    if len(node.get("allOf", [])) == 1:
        return _branches(node["allOf"][0], defs)
    node = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    kind = node.get("type", "string" if "enum" in node else "any")
    if isinstance(kind, list):
        return [{**node, "type": k} for k in kind]
    return [{**node, "type": kind}]


def _covers(wide: str, narrow: str) -> bool:
    return wide in (narrow, "any") or (wide, narrow) == ("number", "integer")


def _compare(
    old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any]
) -> list[tuple[str, bool]]:
    old_b, new_b = _branches(old, old_defs), _branches(new, new_defs)
    out: list[tuple[str, bool]] = []
    for ob in old_b:
        candidates = [nb for nb in new_b if _covers(nb["type"], ob["type"])]
        if candidates:
            found = [_compare_branch(ob, nb, old_defs, new_defs) for nb in candidates]
            out += min(found, key=lambda changes: sum(b for _, b in changes))
            continue
        narrower = [nb["type"] for nb in new_b if _covers(ob["type"], nb["type"])]
        if ob["type"] == "null":
            out.append(("no longer nullable", True))
        elif narrower:
            out.append((f"type narrowed: {ob['type']} -> {narrower[0]}", True))
        else:
            out.append((f"no longer accepts {ob['type']}", True))
    for nb in new_b:
        if any(_covers(ob["type"], nb["type"]) or _covers(nb["type"], ob["type"]) for ob in old_b):
            continue
        text = "became nullable" if nb["type"] == "null" else f"now accepts {nb['type']}"
        out.append((text, False))
    return out


def _compare_branch(
    old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any]
) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    if old["type"] != new["type"]:
        out.append((f"type widened: {old['type']} -> {new['type']}", False))
    if new["type"] == "any":
        return out
    old_enum, new_enum = old.get("enum"), new.get("enum")
    if old_enum is not None and new_enum is not None:
        out += [(f"enumeration value {v!r} removed", True) for v in old_enum if v not in new_enum]
        out += [(f"enumeration value {v!r} added", False) for v in new_enum if v not in old_enum]
    elif new_enum is not None:
        out.append(("restricted to an enumeration", True))
    elif old_enum is not None:
        out.append(("enumeration lifted", False))
    for key in (*_UPPER, *_LOWER):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if before is None or after is None:
            narrowed = after is not None
        else:
            narrowed = after < before if key in _UPPER else after > before
        out.append((f"{key} {before} -> {after}", narrowed))
    for key in _EXACT:
        if old.get(key) != new.get(key):
            out.append((f"{key} {old.get(key)} -> {new.get(key)}", new.get(key) is not None))
    if old.get("additionalProperties") is not False and new.get("additionalProperties") is False:
        out.append(("additional properties no longer allowed", True))
    if "items" in old or "items" in new:
        items = _compare(old.get("items", {}), new.get("items", {}), old_defs, new_defs)
        out += [(f"items: {text}", breaking) for text, breaking in items]
    return out
