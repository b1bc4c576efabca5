"""What the contract says about each field that mapping needs: is it an enumeration (or a list of
one), and which spellings of its values to accept."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Any

from cadastre.contract import entity_model
from cadastre.contract.reso import STANDARD_NAMES

_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def fold(text: str) -> str:
    """The spelling-insensitive form of an enumeration value: 'Active Under Contract',
    'active-under-contract' and 'ActiveUnderContract' all fold to 'activeundercontract'."""
    return _NOT_ALNUM.sub("", text.casefold())


@dataclass(frozen=True)
class EnumField:
    enum: type[StrEnum]
    many: bool  # a list of values (RESO multi-select lookups)

    def spellings(self) -> dict[str, str]:
        """Accepted spelling -> lookup value: the value itself, its RESO StandardName, and the
        folded form of both."""
        accepted: dict[str, str] = {}
        standard = STANDARD_NAMES.get(self.enum, {})
        for member in self.enum:
            for spelling in (member.value, standard.get(member.value, member.value)):
                accepted[spelling] = member.value
                accepted.setdefault(fold(spelling), member.value)
        return accepted

    @property
    def exact(self) -> frozenset[str]:
        """The spellings that match exactly: each value and its StandardName, as written."""
        standard = STANDARD_NAMES.get(self.enum, {})
        return frozenset(
            spelling
            for member in self.enum
            for spelling in (member.value, standard.get(member.value, member.value))
        )


def _enum_of(annotation: Any) -> EnumField | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None) and (found := _enum_of(arg)) is not None:
                return found
        return None
    if origin is typing.Annotated:
        return _enum_of(typing.get_args(annotation)[0])
    if origin in (list, set, frozenset, tuple):
        args = typing.get_args(annotation)
        inner = _enum_of(args[0]) if args else None
        return EnumField(inner.enum, True) if inner else None
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return EnumField(annotation, False)
    return None


@cache
def enum_fields(entity: str) -> dict[str, EnumField]:
    """Wire name -> enumeration, for the entity's enumerated fields."""
    model = entity_model(entity)
    out: dict[str, EnumField] = {}
    for name, info in model.model_fields.items():
        found = _enum_of(info.annotation)
        if found is not None:
            out[info.alias or name] = found
    return out


def _scalar(annotation: Any) -> type | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [_scalar(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return found[0] if len(found) == 1 else None
    if origin is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    if annotation in (bool, int, float, Decimal):
        return typing.cast("type", annotation)
    return None


@cache
def typed_fields(entity: str) -> frozenset[str]:
    """Wire names of the entity's number and yes/no fields: text arriving for one of them is a
    coercion (``"350000"`` for ``ListPrice``), which lowers the value's confidence."""
    model = entity_model(entity)
    return frozenset(
        info.alias or name
        for name, info in model.model_fields.items()
        if _scalar(info.annotation) is not None
    )
