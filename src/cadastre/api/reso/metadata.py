"""``$metadata`` (OData CSDL XML, EDMX 4.0) and the service document, built from ``edm``.

One schema, ``org.reso.metadata``, as RESO's reference metadata names it, holding the entity
types and the ``Default`` container, so RESO clients find types under the names they expect.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from cadastre.api.reso.edm import LOOKUP, Resource, resources

NAMESPACE = "org.reso.metadata"
EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
LOOKUP_TERM = "RESO.OData.Metadata.LookupName"


def served() -> list[Resource]:
    return [*resources().values(), LOOKUP]


def _entity_type(schema: Element, resource: Resource) -> None:
    entity = SubElement(schema, "EntityType", Name=resource.name)
    SubElement(SubElement(entity, "Key"), "PropertyRef", Name=resource.key)
    for prop in sorted(resource.properties.values(), key=lambda p: p.name):
        attributes = {"Name": prop.name, "Type": prop.type_name}
        if prop.name == resource.key or prop.collection:
            attributes["Nullable"] = "false"  # a collection is [] when empty, never null
        if prop.max_length is not None:
            attributes["MaxLength"] = str(prop.max_length)
        element = SubElement(entity, "Property", attributes)
        if prop.lookup is not None:
            SubElement(element, "Annotation", Term=LOOKUP_TERM, String=prop.lookup.__name__)


@cache
def metadata_xml() -> bytes:
    root = Element("edmx:Edmx", {"xmlns:edmx": EDMX, "Version": "4.0"})
    services = SubElement(root, "edmx:DataServices")
    schema = SubElement(services, "Schema", {"xmlns": EDM, "Namespace": NAMESPACE})
    for resource in served():
        _entity_type(schema, resource)
    container = SubElement(schema, "EntityContainer", Name="Default")
    for resource in served():
        SubElement(
            container, "EntitySet", Name=resource.name, EntityType=f"{NAMESPACE}.{resource.name}"
        )
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode").encode()


def service_document(base: str) -> dict[str, Any]:
    return {
        "@odata.context": f"{base}/$metadata",
        "value": [{"name": r.name, "kind": "EntitySet", "url": r.name} for r in served()],
    }
