"""What ``cadastre mappings check`` reports: how well a mapping covers the records a connection
actually sends, worked out from the mapper's own counters and the changes it made.

- ``coverage``: the share of vendor fields seen in the data that the mapping maps (to a
  canonical field, or as the key, timestamp or deletion rule) or keeps as local fields. OData
  annotations (``@odata.etag``) are protocol, not fields, and are not counted.
- ``dd_coverage``: the share of the canonical entity's fields (Cadastre's own and LocalFields
  aside) that at least one mapped record fills with a value.
- ``unmapped_fields``, ``dropped_fields``, ``unmapped_enum_values`` ({vendor field: [values]}),
  and ``dd_fields_not_in_contract``: vendor fields with a RESO Data Dictionary standard name of
  the stream's resource that the canonical contract does not carry (so no mapping can place
  them; they are candidates for local fields or a contract change).

``snapshot_coverage`` answers the same first question for what a connection has sent over time
(its schema snapshot's seen fields and enumeration values, ``cadastre.sync.drift``) rather than
for a sample read now: the operations console's mapping coverage page.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from cadastre.contract import Change, entity_model, field_names
from cadastre.contract.registry import LOCAL_FIELDS
from cadastre.mapping.dd import data_dictionary

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from cadastre.mapping.mapper import RecordMapper, Rejection

# How drift snapshots mark a field whose values passed their cap (cadastre.sync.drift.OPEN_ENDED:
# no vendor value starts with a control character); such a field's values are not listed.
_OPEN_ENDED_MARK = "\x1f"


def snapshot_coverage(
    mapper: RecordMapper, seen_fields: Iterable[str], seen_values: Mapping[str, Iterable[str]]
) -> dict[str, Any]:
    """How ``mapper`` covers what a connection's stream has sent: ``coverage`` (the share of the
    seen vendor fields it maps or keeps as local fields, as in ``MappingCheck``), the
    ``unmapped_fields`` and ``dropped_fields``, and ``unmapped_enum_values`` ({vendor field:
    [values]}: values of an enumerated field it maps that it cannot read)."""
    seen = sorted({name for name in seen_fields if not name.startswith("@")})
    kinds = {name: mapper.disposition(name) for name in seen}
    covered = [n for n in seen if kinds[n] in ("mapped", "local")]
    unmapped_values: dict[str, list[str]] = {}
    for name, values in sorted(seen_values.items()):
        missed = sorted(
            v for v in values
            if not v.startswith(_OPEN_ENDED_MARK) and mapper.knows_value(name, v) is False
        )  # fmt: skip
        if missed:
            unmapped_values[name] = missed
    return {
        "mapping": mapper.label,
        "vendor_fields": len(seen),
        "covered": len(covered),
        "coverage": round(len(covered) / len(seen), 4) if seen else 0.0,
        "unmapped_fields": [n for n in seen if kinds[n] == "unmapped"],
        "dropped_fields": [n for n in seen if kinds[n] == "dropped"],
        "unmapped_enum_values": unmapped_values,
    }


class MappingCheck:
    """Feed it what the mapper returned for each sampled record; ask for the report at the end.
    The mapper's counters should be fresh (a new mapper, or cleared) when sampling starts."""

    def __init__(self, mapper: RecordMapper) -> None:
        self.mapper = mapper
        self.records = 0
        self.deleted = 0
        self.filled: Counter[str] = Counter()  # canonical field -> records that gave it a value
        self.rejected: Counter[str] = Counter()  # rejection code -> records

    def observe(self, result: Change | Rejection) -> None:
        self.records += 1
        if not isinstance(result, Change):
            self.rejected[result.code] += 1
            return
        if not result.fields:
            self.deleted += 1
        self.filled.update(k for k, v in result.fields.items() if v is not None)

    def report(self) -> dict[str, Any]:
        mapper = self.mapper
        seen = sorted(mapper.seen_fields)
        kinds = {name: mapper.disposition(name) for name in seen}
        covered = [n for n in seen if kinds[n] in ("mapped", "local")]
        model = entity_model(mapper.entity)
        own: frozenset[str] = getattr(model, "cadastre_fields", frozenset())  # RESO models
        canonical = field_names(mapper.entity) - {LOCAL_FIELDS} - own
        filled = canonical & self.filled.keys()
        resource: str = getattr(model, "reso_resource", mapper.stream)
        standard = data_dictionary().fields(resource)
        return {
            "mapping": mapper.label,
            "records": self.records,
            "mapped": self.records - sum(self.rejected.values()),
            "deleted": self.deleted,
            "rejected": dict(sorted(self.rejected.items())),
            "coverage": round(len(covered) / len(seen), 4) if seen else 0.0,
            "dd_coverage": round(len(filled) / len(canonical), 4) if canonical else 0.0,
            "vendor_fields": len(seen),
            "unmapped_fields": [n for n in seen if kinds[n] == "unmapped"],
            "dropped_fields": [n for n in seen if kinds[n] == "dropped"],
            "unmapped_enum_values": {
                name: sorted(values) for name, values in sorted(mapper.unmapped_values.items())
            },
            "unfilled_fields": sorted(canonical - filled),
            "dd_fields_not_in_contract": sorted(
                n for n in seen if n in standard and n not in canonical
            ),
        }
