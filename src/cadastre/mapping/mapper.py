"""``RecordMapper``: one vendor record in, one canonical change or one reason to quarantine out.

Compiled once from a resolved ``MappingSpec``: every vendor field name is looked up once per
record in a dict built here, so mapping a 50-field record costs a few microseconds, not a
validation pass (the sync engine validates values against the contract when it applies them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadastre.contract import Change, Origin, field_names
from cadastre.contract.registry import LOCAL_FIELDS
from cadastre.errors import ContractError, MappingError
from cadastre.mapping.lookups import EnumField, enum_fields, fold

if TYPE_CHECKING:
    from cadastre.mapping.spec import MappingSpec
    from cadastre.ports import RawRecord


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot become a change; it goes to quarantine with its raw payload.
    ``code`` is one of a few words (a metric label); ``reason`` says it for a person."""

    code: str  # "unreadable" | "missing_key" | "missing_timestamp" | "unknown_enum_value"
    reason: str


@dataclass(frozen=True)
class _Target:
    field: str
    enum: EnumField | None
    spellings: dict[str, str] | None


class RecordMapper:
    def __init__(self, spec: MappingSpec) -> None:
        if not (spec.entity and spec.stream and spec.key and spec.timestamp):
            raise MappingError(
                f"mapping {spec.mapping!r} must name entity, stream, key and timestamp "
                "(itself or through what it extends)"
            )
        self.spec = spec
        self.entity: str = spec.entity
        self.stream: str = spec.stream
        self.key: str = spec.key
        self.timestamp: str = spec.timestamp
        self.label = f"{spec.mapping} v{spec.version}"
        try:
            canonical = field_names(self.entity) - {LOCAL_FIELDS}
        except ContractError as exc:
            raise MappingError(f"mapping {spec.mapping!r}: {exc}") from None
        enums = enum_fields(self.entity)
        self._targets: dict[str, _Target | None] = {}
        renamed = {t for t in spec.fields.values() if t is not None}
        if spec.standard_names:
            for name in canonical - renamed:
                self._targets[name] = self._target(name, enums)
        problems: list[str] = []
        claimed: dict[str, str] = {}
        for vendor, target in spec.fields.items():
            if target is None:
                self._targets[vendor] = None
                continue
            if target not in canonical:
                problems.append(f"fields.{vendor}: {target!r} is not a field of {self.entity}")
                continue
            if target in claimed:
                problems.append(
                    f"fields.{vendor}: {target} is already the target of {claimed[target]}"
                )
                continue
            claimed[target] = vendor
            self._targets[vendor] = self._target(target, enums)
        for field, values in spec.enums.items():
            if field not in enums:
                problems.append(f"enums.{field}: not an enumerated field of {self.entity}")
                continue
            allowed = {member.value for member in enums[field].enum}
            kind = enums[field].enum.__name__
            problems.extend(
                f"enums.{field}.{spelling}: {value!r} is not a value of {kind}"
                for spelling, value in values.items()
                if value not in allowed
            )
        if problems:
            raise MappingError(f"mapping {spec.mapping!r}: " + "; ".join(problems))
        self._prefixes = tuple(spec.local_prefixes)
        self._keep_unknown = spec.unknown_fields == "local"
        # The hot path works with whole-set operations on these (C loops, not Python ones).
        self._renames = {v: t.field for v, t in self._targets.items() if t and not t.spellings}
        self._enums = {v: t for v, t in self._targets.items() if t and t.spellings}
        self._mapped = frozenset(self._targets)
        self.unknown: Counter[str] = Counter()  # vendor fields neither mapped nor local, seen

    def _target(self, field: str, enums: dict[str, EnumField]) -> _Target:
        enum = enums.get(field)
        if enum is None:
            return _Target(field, None, None)
        spellings = enum.spellings()
        for spelling, value in self.spec.enums.get(field, {}).items():
            spellings[spelling] = value
            spellings.setdefault(fold(spelling), value)
        return _Target(field, enum, spellings)

    def vendor_fields(self, offered: frozenset[str] | None = None) -> list[str]:
        """The vendor fields worth asking for (``$select``): mapped ones, and local ones among
        ``offered`` (what the vendor's metadata lists), in a stable order."""
        wanted = {name for name, target in self._targets.items() if target is not None}
        wanted |= {self.key, self.timestamp}
        if offered is not None:
            wanted &= offered
            dropped = {name for name, target in self._targets.items() if target is None}
            wanted |= {n for n in offered if n.startswith(self._prefixes) and n not in dropped}
        return sorted(wanted)

    def map(
        self, raw: RawRecord, *, tenant: str, connection: str, system: str
    ) -> Change | Rejection:
        if raw.problem is not None:
            return Rejection("unreadable", raw.problem)
        if raw.external_id is None:
            return Rejection("missing_key", f"missing key: {self.key} is absent or empty")
        if raw.source_time is None:
            return Rejection("missing_timestamp", f"missing or unreadable {self.timestamp}")
        data = raw.data
        renames = self._renames
        fields: dict[str, Any] = {renames[k]: v for k, v in data.items() if k in renames}
        problems: list[str] = []
        for name in self._enums.keys() & data.keys():
            target, value = self._enums[name], data[name]
            fields[target.field] = (
                self._enum(target, value, problems) if value is not None else None
            )
        rest = data.keys() - self._mapped
        if rest:
            local: dict[str, Any] = {}
            for name in sorted(rest):
                if name.startswith(self._prefixes) or self._keep_unknown:
                    local[name] = data[name]
                elif not name.startswith("@"):  # OData annotations are protocol, not data
                    self.unknown[name] += 1
            if local:
                fields[LOCAL_FIELDS] = local
        if problems:
            return Rejection("unknown_enum_value", "; ".join(problems) + f" (mapping {self.label})")
        return Change(
            tenant=tenant,
            entity=self.entity,
            fields=fields,
            origin=Origin(
                system=system,
                connection=connection,
                external_id=raw.external_id,
                source_version=raw.source_version,
                source_time=raw.source_time,
            ),
        )

    @staticmethod
    def _enum(target: _Target, value: Any, problems: list[str]) -> Any:
        spellings = target.spellings or {}
        assert target.enum is not None  # noqa: S101 - spellings exist only for enum targets

        def one(item: Any) -> Any:
            if not isinstance(item, str):
                return item  # the contract check names the wrong type
            found = spellings.get(item) or spellings.get(fold(item))
            if found is None:
                shown = item if len(item) <= 40 else item[:37] + "..."
                problems.append(f"{target.field}: unknown enumeration value {shown!r}")
                return item
            return found

        if target.enum.many:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, list):
                return [one(i.strip() if isinstance(i, str) else i) for i in items]
            return value
        return one(value)
