"""Which model each entity name means, and field-level validation against it.

The sync engine validates the fields of a ``Change`` here before writing: a change carries a
partial record (wire name -> value), so each field is validated on its own against the type the
model declares for it, with the model's string handling.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from cadastre.contract.platform import (
    Deal,
    Lease,
    LedgerAccount,
    LedgerEntry,
    Payment,
    Property,
    Resident,
    Unit,
)
from cadastre.contract.reso import Contact, Listing, Media, Member, Office, OpenHouse
from cadastre.contract.wire import check_json
from cadastre.errors import ContractError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.contract.base import CanonicalModel

# Same order as ``cadastre.contract.events.ENTITIES``; a test holds them equal.
ENTITY_MODELS: dict[str, type[CanonicalModel]] = {
    model.entity_name: model
    for model in (
        Listing, Property, Member, Office, Media, OpenHouse, Contact,
        Unit, Lease, Resident, LedgerAccount, LedgerEntry, Payment, Deal,
    )
}  # fmt: skip

_FIELD_CONFIG = ConfigDict(str_strip_whitespace=True)  # as CanonicalModel strips strings


def entity_model(entity: str) -> type[CanonicalModel]:
    try:
        return ENTITY_MODELS[entity]
    except KeyError:
        known = ", ".join(ENTITY_MODELS)
        raise ContractError(f"unknown entity {entity!r}; the contract has {known}") from None


LOCAL_FIELDS = "LocalFields"


def field_names(entity: str) -> frozenset[str]:
    """Wire names of every field of the entity, ``LocalFields`` included."""
    return frozenset(entity_model(entity).wire_fields())


@cache
def _adapters(model: type[CanonicalModel]) -> dict[str, TypeAdapter[Any]]:
    out: dict[str, TypeAdapter[Any]] = {}
    for name, info in model.model_fields.items():
        # The constraints (max_length, pattern, ge) live in the metadata, not the annotation.
        annotated: Any = info.annotation
        if info.metadata:
            annotated = Annotated[(annotated, *info.metadata)]
        out[info.alias or name] = TypeAdapter(annotated, config=_FIELD_CONFIG)
    return out


@cache
def _record_adapter(model: type[CanonicalModel]) -> tuple[TypeAdapter[Any], frozenset[str]]:
    """One adapter for a partial record (a ``TypedDict`` of every field, none required), so a
    record is validated in one call into pydantic-core instead of one call per field."""
    annotations: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotated: Any = info.annotation
        if info.metadata:
            annotated = Annotated[(annotated, *info.metadata)]
        annotations[info.alias or name] = annotated
    make: Any = TypedDict  # the functional form, with names only known at run time
    partial: Any = make(f"Partial{model.__name__}", annotations, total=False)
    partial.__pydantic_config__ = _FIELD_CONFIG
    return TypeAdapter(partial), frozenset(annotations)


def validate_fields(entity: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a partial record given by wire names; return its JSON-compatible values.

    ``None`` clears an optional field. Decimals come back as normalised strings ("350000", not
    "350000.00") so that equal amounts compare and hash equal whatever precision a vendor sent.
    Raises ``ContractError`` naming every field that is unknown or invalid.
    """
    model = entity_model(entity)
    adapter, known = _record_adapter(model)
    if known.issuperset(fields):
        try:
            if LOCAL_FIELDS in fields:
                check_json(fields[LOCAL_FIELDS], LOCAL_FIELDS)
            values = adapter.validate_python(dict(fields))
            for wire, value in values.items():
                if isinstance(value, Decimal):
                    values[wire] = _normal(value)
            dumped: dict[str, Any] = adapter.dump_python(values, mode="json")
            check_json(dumped)
        except (ValidationError, InvalidOperation, ContractError):
            pass  # the field-by-field pass below names each problem
        else:
            return dumped
    return _validate_each(model, entity, fields)


def _validate_each(
    model: type[CanonicalModel], entity: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    adapters = _adapters(model)
    out: dict[str, Any] = {}
    problems: list[str] = []
    for wire, raw in fields.items():
        adapter = adapters.get(wire)
        if adapter is None:
            problems.append(f"{wire}: not a field of {entity}")
            continue
        try:
            if wire == LOCAL_FIELDS:
                # The bag is untyped, and pydantic's JSON mode would quietly turn NaN into null:
                # it must already be storable JSON as given.
                check_json(raw, wire)
            value = adapter.validate_python(raw)
            if isinstance(value, Decimal):
                value = _normal(value)
            dumped = adapter.dump_python(value, mode="json")
            check_json(dumped, wire)  # e.g. a 2**64 in LocalFields: refused here, per change
        except ValidationError as exc:
            problems.extend(_describe(wire, exc))
            continue
        except InvalidOperation:
            problems.append(f"{wire}: {str(raw)[:40]!r} is too large a number to keep exactly")
            continue
        except ContractError as exc:
            problems.append(str(exc))
            continue
        out[wire] = dumped
    if problems:
        raise ContractError(f"invalid {entity} fields: " + "; ".join(problems))
    return out


def _normal(value: Decimal) -> Decimal:
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        # normalize() alone turns 350000 into 3.5E+5; JSON readers want plain digits.
        return normal.quantize(Decimal(1))
    return normal


def _describe(wire: str, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False):
        where = "".join(f"[{part!r}]" for part in error["loc"])
        message = error["msg"]
        if error["type"] == "enum":
            # pydantic lists every member; RESO lookups run to hundreds of values.
            message = "not one of the values of its enumeration"
        shown = repr(error["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        out.append(f"{wire}{where}: {message} (got {shown})")
    return out
