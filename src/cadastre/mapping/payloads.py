"""Which canonical fields an MLS withholds from a RESO payload class (IDX public display, VOW
registered consumers), from its mapping file's ``payloads``. The API calls ``withheld_fields``
for the class on the caller's key and leaves those fields out of every answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from cadastre.contract import entity_model, field_names

if TYPE_CHECKING:
    from cadastre.mapping.spec import MappingSpec

_CLASSES: dict[str, Literal["IDX", "VOW"] | None] = {"full": None, "idx": "IDX", "vow": "VOW"}


def withheld_fields(spec: MappingSpec, payload_class: str) -> frozenset[str]:
    """The wire names withheld from ``payload_class`` ("full", "idx", "vow" in any case; a
    ``PayloadClass`` is one). ``full`` and a class the file says nothing about withhold nothing.
    Under an ``include`` list everything else is withheld except the record's key, which every
    answer needs to be an answer about a record."""
    try:
        name = _CLASSES[str(payload_class).lower()]
    except KeyError:
        raise ValueError(
            f"payload class {payload_class!r} is not one of {', '.join(_CLASSES)}"
        ) from None
    rule = spec.payloads.get(name) if name else None
    if rule is None:
        return frozenset()
    if rule.exclude is not None:
        return frozenset(rule.exclude)
    entity = spec.entity or "Listing"
    key = entity_model(entity).key_field
    return field_names(entity) - set(rule.include or ()) - {key}
