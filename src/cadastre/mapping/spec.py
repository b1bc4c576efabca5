"""The mapping file format: how one system's records become canonical changes.

A vendor package's ``mapping.yaml`` holds its family's defaults (``mls/reso``: RESO standard names
map to themselves, lookup display names to lookup values). A per-MLS file in the mapping registry
folder names the defaults it ``extends`` and adds what differs in that region: renamed fields,
local spellings of enumeration values, its local-field prefix. Onboarding an MLS adds one file.

    mapping: austin-mls            # this file's name in the registry
    version: 3                     # bump on every edit; recorded on every quarantined record
    extends: mls/reso              # the family defaults to start from
    local_prefixes: [ACT_]         # vendor fields kept as received in LocalFields
    fields: {ACT_ListPriceLow: null, Status: StandardStatus}   # vendor -> canonical; null drops
    enums: {StandardStatus: {AUC: ActiveUnderContract}}        # vendor spelling -> lookup value
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MappingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: str = Field(min_length=1, description="name of this mapping in its registry")
    version: int = Field(ge=1)
    extends: str | None = Field(default=None, description="family defaults, e.g. 'mls/reso'")
    entity: str | None = Field(default=None, description="canonical entity, e.g. 'Listing'")
    stream: str | None = Field(default=None, description="vendor resource, e.g. 'Property'")
    key: str | None = Field(default=None, description="vendor field holding the record's key")
    timestamp: str | None = Field(
        default=None, description="vendor field holding the modification time"
    )
    standard_names: bool | None = Field(
        default=None, description="vendor fields named like canonical fields map to themselves"
    )
    fields: dict[str, str | None] = Field(default_factory=dict)
    enums: dict[str, dict[str, str]] = Field(default_factory=dict)
    local_prefixes: list[str] = Field(default_factory=list)
    unknown_fields: Literal["ignore", "local"] | None = Field(
        default=None,
        description="vendor fields neither mapped nor local: dropped (and reported) or kept local",
    )

    def over(self, base: MappingSpec) -> MappingSpec:
        """This file's settings laid over ``base`` (what it extends)."""
        enums = {k: dict(v) for k, v in base.enums.items()}
        for field, values in self.enums.items():
            enums[field] = {**enums.get(field, {}), **values}
        return MappingSpec(
            mapping=self.mapping,
            version=self.version,
            extends=self.extends,
            entity=self.entity or base.entity,
            stream=self.stream or base.stream,
            key=self.key or base.key,
            timestamp=self.timestamp or base.timestamp,
            standard_names=(
                self.standard_names if self.standard_names is not None else base.standard_names
            ),
            fields={**base.fields, **self.fields},
            enums=enums,
            local_prefixes=list(dict.fromkeys([*base.local_prefixes, *self.local_prefixes])),
            unknown_fields=self.unknown_fields or base.unknown_fields,
        )
