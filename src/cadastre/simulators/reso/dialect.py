"""Regional MLS dialects, configured by data: one YAML file per dialect in ``dialects/`` beside
this module. Every MLS speaks "RESO", each in its own way; a dialect says how this one differs
from the simulator's base records (the ``default`` dialect, which is today's ``ACT_`` MLS):

    name: bridge
    local_prefix: BRG_                 # local fields are <prefix><name>
    local_fields: [SchoolDistrict]     # which of LOCAL_NAMES this MLS has
    absent: [MlsStatus]                # standard fields this region does not send
    renamed: {LivingArea: LivingAreaSqM}             # standard name -> the name it sends
    values: {LivingAreaSqM: {scale: 0.09290304, digits: 1}}  # how a value is written
    enums: {StandardStatus: {Active Under Contract: AUC}}    # base spelling -> its spelling
    added: {PrivateRemarks: {type: Edm.String, max_length: 4000, template: "{ListAgentFullName}"}}
    constants: {OriginatingSystemName: Bridge Demo MLS}
    page: {default: 10, max: 200, max_expand: 200, over_max: cap}   # $top
    rate_limits: [{requests: 334, per: 60}, {requests: 5000, per: 3600}]
    token_ttl: 3600
    deletion: {style: vanish}          # or {style: flag, field: MlgCanView}
    media: {expand: false, resource: true}

The simulator generates base records and passes each through ``Dialect.wire``; ``fields()`` gives
the schema that ``$metadata`` and ``$filter`` use. No dialect has code of its own: a new region is
a new file.
"""

from __future__ import annotations

import string
from datetime import date
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cadastre.simulators.ratelimit import RateLimit
from cadastre.simulators.reso.schema import (
    BOOLEAN,
    DATE,
    DATETIMEOFFSET,
    DECIMAL,
    DOUBLE,
    INT32,
    KEY_FIELD,
    STANDARD_FIELDS,
    STRING,
    TIMESTAMP_FIELD,
    FieldSpec,
    local_fields,
)

DIALECTS_DIR = Path(__file__).with_name("dialects")
BASE_PREFIX = "ACT_"  # the prefix base records are generated with
LOCAL_NAMES = tuple(spec.name.removeprefix(BASE_PREFIX) for spec in local_fields(BASE_PREFIX))
EDM_TYPES = (STRING, DECIMAL, INT32, BOOLEAN, DATETIMEOFFSET, DATE, DOUBLE)
_STANDARD = {spec.name: spec for spec in STANDARD_FIELDS}
# Never absent or renamed: paging, replication and the defects are built on them.
_FIXED = frozenset({KEY_FIELD, TIMESTAMP_FIELD, "StandardStatus", "ListPrice"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PageSizes(_Strict):
    default: int = Field(default=100, ge=1)  # $top when the client gives none
    max: int = Field(default=1000, ge=1)
    max_expand: int | None = Field(default=None, ge=1)  # the cap with $expand (None: max)
    over_max: Literal["cap", "error"] = "cap"  # a larger $top: served at the cap, or 400


class ValueFormat(_Strict):
    scale: float | None = None  # a number is sent multiplied by this (a unit change)
    digits: int | None = None  # ... and rounded to this many decimals
    date_format: str | None = None  # a Date is sent as text in this strftime format

    @model_validator(mode="after")
    def _one_kind(self) -> ValueFormat:
        if (self.scale is None) == (self.date_format is None):
            raise ValueError("a value format is a scale (with digits) or a date_format")
        return self


class AddedField(_Strict):
    type: str
    max_length: int | None = None
    template: str | None = None  # str.format over the base record
    value: Any = None  # else this constant

    @model_validator(mode="after")
    def _known_type(self) -> AddedField:
        if self.type not in EDM_TYPES:
            raise ValueError(f"type is one of {', '.join(EDM_TYPES)}")
        return self


class Window(_Strict):
    requests: int = Field(ge=1)
    per: float = Field(gt=0)
    window: Literal["sliding", "fixed"] = "sliding"


class Deletion(_Strict):
    style: Literal["vanish", "flag"] = "vanish"
    field: str | None = None  # with flag: the Boolean that turns false on deleted records

    @model_validator(mode="after")
    def _flag_has_field(self) -> Deletion:
        if (self.style == "flag") != (self.field is not None):
            raise ValueError("deletion style flag names its field, vanish names none")
        return self


class MediaSupport(_Strict):
    expand: bool = False  # $expand=Media on Property
    resource: bool = False  # a Media collection of its own


class Dialect(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    local_prefix: str = BASE_PREFIX
    local_fields: list[str] = Field(default_factory=lambda: list(LOCAL_NAMES))
    absent: list[str] = Field(default_factory=list)
    renamed: dict[str, str] = Field(default_factory=dict)
    values: dict[str, ValueFormat] = Field(default_factory=dict)
    enums: dict[str, dict[str, str]] = Field(default_factory=dict)
    added: dict[str, AddedField] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    page: PageSizes = Field(default_factory=PageSizes)
    rate_limits: list[Window] = Field(default_factory=list)  # empty: no limit
    token_ttl: float = Field(default=3600, gt=0)
    deletion: Deletion = Field(default_factory=Deletion)
    media: MediaSupport = Field(default_factory=MediaSupport)

    @model_validator(mode="after")
    def _consistent(self) -> Dialect:
        unknown_local = sorted(set(self.local_fields) - set(LOCAL_NAMES))
        if unknown_local:
            raise ValueError(f"local_fields: unknown {unknown_local} (known: {LOCAL_NAMES})")
        for name in (*self.absent, *self.renamed, *self.constants):
            if name not in _STANDARD:
                raise ValueError(f"{name!r} is not a standard field of the base records")
            if name in _FIXED:
                raise ValueError(f"{name} is never absent, renamed or constant")
        if set(self.absent) & set(self.renamed):
            raise ValueError("a field is absent or renamed, not both")
        names = set(self.fields())
        for name in self.values:
            if name not in names:
                raise ValueError(f"values: {name!r} is not a field of this dialect")
        for name in self.enums:
            if name not in _STANDARD or name in self.absent or name in self.renamed:
                raise ValueError(f"enums: {name!r} is not a standard field this dialect sends")
        for name, added in self.added.items():
            if name in _STANDARD or name.startswith(self.local_prefix):
                raise ValueError(f"added: {name!r} collides with a standard or local field")
            if added.template is not None:
                used = {part[1] for part in string.Formatter().parse(added.template) if part[1]}
                base = {*_STANDARD, *(BASE_PREFIX + local for local in LOCAL_NAMES)}
                if not used <= base:
                    raise ValueError(f"added: {name} uses unknown fields {sorted(used - base)}")
        if self.page.default > self.page.max:
            raise ValueError("page.default is at most page.max")
        return self

    # ------------------------------------------------------------------------------ schema

    @property
    def rate_limit(self) -> RateLimit | None:
        if not self.rate_limits:
            return None
        first, *rest = (RateLimit(w.requests, w.per, w.window) for w in self.rate_limits)
        return RateLimit(first.requests, first.per, first.window, also=tuple(rest))

    @property
    def max_expand(self) -> int:
        return self.page.max_expand or self.page.max

    def fields(self) -> dict[str, FieldSpec]:
        """The Property schema this dialect serves, in wire order."""
        specs: dict[str, FieldSpec] = {}
        for spec in STANDARD_FIELDS:
            if spec.name in self.absent:
                continue
            name = self.renamed.get(spec.name, spec.name)
            specs[name] = FieldSpec(name, spec.edm, spec.max_length, spec.precision, spec.scale)
        for spec in local_fields(self.local_prefix):
            if spec.name.removeprefix(self.local_prefix) in self.local_fields:
                specs[spec.name] = spec
        for name, added in self.added.items():
            specs[name] = FieldSpec(name, added.type, added.max_length)
        if self.deletion.field is not None:
            specs[self.deletion.field] = FieldSpec(self.deletion.field, BOOLEAN)
        for name, fmt in self.values.items():
            if fmt.date_format is not None and name in specs:  # text now, not an Edm.Date
                specs[name] = FieldSpec(name, STRING, 10)
        return specs

    # ------------------------------------------------------------------------------ records

    @cached_property
    def is_base(self) -> bool:
        """Whether this dialect sends the base records unchanged."""
        changes = (self.absent, self.renamed, self.values, self.enums, self.added, self.constants)
        return (
            not any(changes)
            and self.deletion.field is None
            and self.local_prefix == BASE_PREFIX
            and tuple(self.local_fields) == LOCAL_NAMES
        )

    def wire(self, base: dict[str, Any]) -> dict[str, Any]:
        """A base record (generated with the ``ACT_`` prefix) as this dialect sends it."""
        if self.is_base:
            return base  # the 50,000-record start-up path of the default dialect
        names, enums = self._names, self.enums
        out: dict[str, Any] = {}
        for name, value in base.items():
            wire_name = names.get(name, name)
            if wire_name is None:
                continue
            spelling = enums.get(name)
            if spelling is not None and isinstance(value, str):
                value = spelling.get(value, value)
            out[wire_name] = value
        out.update(self.constants)
        for name, added in self.added.items():
            out[name] = added.template.format_map(base) if added.template else added.value
        if self.deletion.field is not None:
            out[self.deletion.field] = True
        for name, fmt in self.values.items():
            out[name] = _formatted(out.get(name), fmt)
        return out

    @cached_property
    def _names(self) -> dict[str, str | None]:
        """Base field -> the name this dialect sends it under (None: not sent); unchanged names
        are left out."""
        names: dict[str, str | None] = dict.fromkeys(self.absent)
        names.update(self.renamed)
        for local in LOCAL_NAMES:
            kept = local in self.local_fields
            names[BASE_PREFIX + local] = self.local_prefix + local if kept else None
        return names


def _formatted(value: Any, fmt: ValueFormat) -> Any:
    if value is None:
        return None
    if fmt.date_format is not None:
        return _date_text(value, fmt.date_format)
    if isinstance(value, bool) or not isinstance(value, int | float) or fmt.scale is None:
        return value
    scaled = value * fmt.scale
    return round(scaled, fmt.digits) if fmt.digits is not None else scaled


@lru_cache(maxsize=4096)
def _date_text(value: str, date_format: str) -> str:
    # Cached: a year of records has a few hundred distinct days, and strftime is slow.
    return date.fromisoformat(value).strftime(date_format)


def dialect_names() -> list[str]:
    return sorted(path.stem for path in DIALECTS_DIR.glob("*.yaml"))


@cache
def load_dialect(name: str) -> Dialect:
    """A dialect by name (a file in ``dialects/``); ValueError names what is wrong."""
    if name not in dialect_names():
        raise ValueError(f"unknown dialect {name!r} (known: {', '.join(dialect_names())})")
    path = DIALECTS_DIR / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("name") != name:
        raise ValueError(f"dialect file {path.name}: a mapping whose name is {name!r}")
    try:
        return Dialect.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"dialect file {path.name}: {exc}") from None
