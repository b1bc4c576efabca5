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
    transforms: {LivingArea: [{unit: {from: square_meters, to: square_feet}}]}
    defaults: {Country: US}        # when the vendor leaves the field out (or sends null)
    deletion: {field: MlgCanView, equals: false}               # such a record is a DELETE
    refresh: {every_minutes: 15, overlap_minutes: 20}          # the MLS's cadence
    payloads: {IDX: {exclude: [PrivateRemarks]}}               # withheld from a payload class
    required: [ListPrice, StandardStatus]                      # for data confidence

The new keys are checked against the contract when the file is compiled (``RecordMapper``);
this module only holds their shape and how a file lays over what it extends.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Deletion(BaseModel):
    """A record whose ``field`` equals ``equals`` is a deletion (MLS Grid: ``MlgCanView``
    false)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, description="the vendor field to look at")
    equals: str | int | float | bool | None = Field(description="the value that means deleted")


class Refresh(BaseModel):
    """The MLS's refresh cadence: how often it publishes, and how far before the cursor an
    incremental read starts (Spark: "last sync minus 20 minutes")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_minutes: float = Field(gt=0)
    overlap_minutes: float = Field(default=0, ge=0)
    # a live listing (Active, Pending, ...) untouched at the MLS for longer than this is less
    # surely current; its confidence's freshness factor falls (docs/confidence.md)
    stale_after_days: float = Field(default=30, gt=0)


class PayloadRule(BaseModel):
    """The canonical fields an MLS withholds from one payload class: ``exclude`` names them, or
    ``include`` names the only ones served (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: list[str] | None = None
    exclude: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> PayloadRule:
        if (self.include is None) == (self.exclude is None):
            raise ValueError("give exactly one of 'include' or 'exclude'")
        return self


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
    # canonical field -> steps applied in order to the vendor value (see mapping/transforms.py)
    transforms: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    deletion: Deletion | None = None
    refresh: Refresh | None = None
    payloads: dict[Literal["IDX", "VOW"], PayloadRule] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)

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
            # a field's steps replace the base's steps for it (a list has no merge that is
            # right for both "add a step" and "drop a step"); the rest merge by key
            transforms={**base.transforms, **self.transforms},
            defaults={**base.defaults, **self.defaults},
            deletion=self.deletion or base.deletion,
            refresh=self.refresh or base.refresh,
            payloads={**base.payloads, **self.payloads},
            required=list(dict.fromkeys([*base.required, *self.required])),
        )
