"""What an OData CSDL ``$metadata`` document declares about one entity type: its properties and
their types, and the members of the enumerations they are typed with.

RESO servers declare lookups two ways: as ``EnumType`` members (a property typed
``org.reso.metadata.enums.StandardStatus``), or, in the Lookup-resource style MLS Grid and the
RESO reference server use, as ``Edm.String`` properties whose values live in the ``Lookup``
resource. Only the first is in the document; the second shows up as values seen in the data.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cadastre.ports import StreamSchema

MAX_METADATA = 8 * 1024 * 1024  # CSDL documents run to a few MB for the whole Data Dictionary


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_schema(document: bytes, entity_type: str) -> StreamSchema | None:
    """The entity type's schema; None when the document cannot be read or does not declare it
    (a caller then knows nothing, which is not the same as "no fields")."""
    if len(document) > MAX_METADATA:
        return None
    try:
        root = ET.fromstring(document)  # noqa: S314 - expat refuses entity expansion bombs
    except ET.ParseError:
        return None
    enums: dict[str, frozenset[str]] = {}
    found: dict[str, str] | None = None
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        namespace = schema.get("Namespace", "")
        for element in schema:
            kind = _local(element.tag)
            if kind == "EnumType":
                members = frozenset(
                    m.get("Name", "") for m in element if _local(m.tag) == "Member"
                ) - {""}
                enums[f"{namespace}.{element.get('Name', '')}"] = members
            elif kind == "EntityType" and element.get("Name") == entity_type:
                found = {
                    p.get("Name", ""): p.get("Type", "")
                    for p in element
                    if _local(p.tag) == "Property" and p.get("Name")
                }
    if found is None:
        return None
    lookups: dict[str, frozenset[str]] = {}
    for name, type_ in found.items():
        inner = type_.removeprefix("Collection(").removesuffix(")")
        if inner in enums:
            lookups[name] = enums[inner]
    return StreamSchema(fields=found, lookups=lookups)
