"""The resources the RESO endpoint serves, described from the canonical contract's models.

Each resource is a contract model under its RESO name (``Listing`` is served as ``Property``).
Enumerated fields follow the Lookup-resource style of RESO's ``dd-2.0-lookup-resource.xml`` (as
MLS Grid and the RESO reference server do): ``Edm.String`` or ``Collection(Edm.String)`` with a
``RESO.OData.Metadata.LookupName`` annotation, their values listed by the ``Lookup`` resource, so
adding a lookup value never changes the schema. ``LocalFields`` and Cadastre's own reference
fields (``PropertyId``) are not served: no RESO client has a name for them.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Any, Literal

from annotated_types import MaxLen
from pydantic import AwareDatetime

from cadastre.contract import Listing, Media, Member, Office, ResoModel
from cadastre.contract.registry import LOCAL_FIELDS

EdmType = Literal[
    "Edm.String", "Edm.Int64", "Edm.Decimal", "Edm.Boolean", "Edm.Date", "Edm.DateTimeOffset"
]


@dataclass(frozen=True)
class EdmProperty:
    name: str  # the wire name, e.g. "BedroomsTotal"
    edm: EdmType  # of the value, or of each item of a collection
    collection: bool = False
    lookup: type[StrEnum] | None = None  # the lookup of an enumerated field
    max_length: int | None = None

    @property
    def type_name(self) -> str:
        return f"Collection({self.edm})" if self.collection else self.edm


@dataclass(frozen=True)
class Resource:
    name: str  # "Property"
    entity: str  # the store's entity, "Listing"
    key: str  # "ListingKey"
    properties: dict[str, EdmProperty]


_SCALARS: dict[type, EdmType] = {
    str: "Edm.String",
    bool: "Edm.Boolean",
    int: "Edm.Int64",
    Decimal: "Edm.Decimal",
    date: "Edm.Date",
    datetime: "Edm.DateTimeOffset",
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> X; ``list[X]`` -> (X, True); pydantic's AwareDatetime -> datetime."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        return _unwrap(typing.get_args(annotation)[0])[0], True
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation, False


def _property(name: str, annotation: Any, metadata: list[Any]) -> EdmProperty:
    inner, collection = _unwrap(annotation)
    max_length = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    if isinstance(inner, type) and issubclass(inner, StrEnum):
        return EdmProperty(name, "Edm.String", collection, inner, max_length)
    edm = _SCALARS.get(datetime if inner is AwareDatetime else inner)
    if edm is None:  # a new type in the contract: say so at import, not in a response
        raise TypeError(f"field {name}: no EDM type for {annotation!r}")
    return EdmProperty(name, edm, collection, None, max_length)


def _resource(model: type[ResoModel]) -> Resource:
    properties = {}
    for attribute, info in model.model_fields.items():
        wire = info.alias or attribute
        if wire == LOCAL_FIELDS or wire in model.cadastre_fields:
            continue
        properties[wire] = _property(wire, info.annotation, list(info.metadata))
    if model.key_field is None:  # every RESO model has one; a new one must too
        raise TypeError(f"{model.__name__} has no key field")
    return Resource(model.reso_resource, model.entity_name, model.key_field, properties)


@cache
def resources() -> dict[str, Resource]:
    """RESO resource name -> its description, in the order the service document lists them."""
    models: tuple[type[ResoModel], ...] = (Listing, Member, Office, Media)
    return {r.name: r for r in map(_resource, models)}


@cache
def lookups() -> dict[str, type[StrEnum]]:
    """Lookup name -> enumeration, for every lookup a served field uses."""
    found: dict[str, type[StrEnum]] = {}
    for resource in resources().values():
        for prop in resource.properties.values():
            if prop.lookup is not None:
                found[prop.lookup.__name__] = prop.lookup
    return dict(sorted(found.items()))


LOOKUP = Resource(
    name="Lookup",
    entity="",  # not stored: generated from the contract
    key="LookupKey",
    properties={
        name: EdmProperty(name, edm)  # type: ignore[arg-type]
        for name, edm in (
            ("LookupKey", "Edm.String"), ("LookupName", "Edm.String"),
            ("LookupValue", "Edm.String"), ("StandardLookupValue", "Edm.String"),
            ("LegacyODataValue", "Edm.String"), ("ModificationTimestamp", "Edm.DateTimeOffset"),
        )
    },
)  # fmt: skip
