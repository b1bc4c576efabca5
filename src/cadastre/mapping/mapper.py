"""``RecordMapper``: one vendor record in, one canonical change or one reason to quarantine out.

Compiled once from a resolved ``MappingSpec``: every vendor field name is looked up once per
record in a dict built here, so mapping a 50-field record costs a few microseconds, not a
validation pass (the sync engine validates values against the contract when it applies them).

Besides the change, each call scores the record's data confidence (``mapping/confidence.py``)
and counts what it saw (``seen_fields``, ``seen_values``, ``unmapped_values``, ``unknown``) for
``cadastre mappings check`` and schema drift. The counters live as long as the mapper: a caller
that wants one run's figures calls ``reset_observations()`` first.
Longer than most modules because compiling a file and mapping a record share these tables.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cadastre.contract import Change, Operation, Origin, field_names
from cadastre.contract.registry import LOCAL_FIELDS
from cadastre.errors import ContractError, MappingError
from cadastre.mapping import confidence as score
from cadastre.mapping.lookups import EnumField, enum_fields, fold, typed_fields
from cadastre.mapping.rules import check_rules
from cadastre.mapping.transforms import TransformError

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.mapping.spec import MappingSpec
    from cadastre.mapping.transforms import Step
    from cadastre.ports import RawRecord

# Distinct raw values remembered per enumerated vendor field: enough for any real vocabulary,
# bounded against a feed that puts free text in a lookup field.
_MAX_VALUES = 1000
# Distinct field sets remembered whole: a feed that leaves out its null fields (MLS Grid does)
# sends nearly one set per record, so past this many the fields are counted one by one instead.
_MAX_SHAPES = 1000


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot become a change; it goes to quarantine with its raw payload.
    ``code`` is one of a few words (a metric label); ``reason`` says it for a person."""

    # "unreadable" | "missing_key" | "missing_timestamp" | "unknown_enum_value" | "invalid_value"
    code: str
    reason: str


@dataclass(frozen=True)
class _Target:
    field: str
    enum: EnumField | None
    spellings: dict[str, str] | None
    exact: frozenset[str] = frozenset()  # lookup values and their StandardNames, as written
    aliases: frozenset[str] = frozenset()  # the mapping file's own spellings, as written


class RecordMapper:
    def __init__(self, spec: MappingSpec, *, source: str | None = None) -> None:
        """``source`` names the file in error messages (the registry passes it)."""
        where = f"mapping {spec.mapping!r}" + (f" ({source})" if source else "")
        if not (spec.entity and spec.stream and spec.key and spec.timestamp):
            raise MappingError(
                f"{where} must name entity, stream, key and timestamp "
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
            raise MappingError(f"{where}: {exc}") from None
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
        transforms, more = check_rules(spec, self.entity, canonical, canonical | {LOCAL_FIELDS})
        problems.extend(more)
        if problems:
            raise MappingError(f"{where}: " + "; ".join(problems))
        self._prefixes = tuple(spec.local_prefixes)
        self._keep_unknown = spec.unknown_fields == "local"
        # The hot path works with whole-set operations on these (C loops, not Python ones).
        self._renames = {v: t.field for v, t in self._targets.items() if t and not t.spellings}
        self._enums = {v: t for v, t in self._targets.items() if t and t.spellings}
        self._steps: dict[str, list[tuple[str, Step]]] = {
            v: transforms[t.field] for v, t in self._targets.items() if t and t.field in transforms
        }
        self._renamed_steps = frozenset(self._steps.keys() & self._renames.keys())
        typed = typed_fields(self.entity)
        self._typed = {
            v: f for v, f in self._renames.items() if f in typed and v not in self._steps
        }
        self._defaults = dict(spec.defaults)
        self._required = tuple(spec.required)
        self._deletion = spec.deletion
        refresh = spec.refresh
        # Freshness is the value's age at the source: a listing on the market that nobody has
        # touched for longer than this is less surely current (an agent forgot to close it).
        stale_days = refresh.stale_after_days if refresh else score.STALE_AFTER_DAYS
        self._window = stale_days * 86_400.0
        consumed = {spec.deletion.field} if spec.deletion else set()
        self._mapped = frozenset(self._targets) | consumed
        self.unknown: Counter[str] = Counter()  # vendor fields neither mapped nor local, seen
        # The field sets of the records seen, counted: a feed sends a handful of distinct sets,
        # so one set per record is cheaper than one count per field per record.
        self._shapes: Counter[frozenset[str]] = Counter()
        self._fields: Counter[str] = Counter()  # fields of the records past _MAX_SHAPES sets
        # enumerated vendor field -> its raw values seen (each item of a multi-select)
        self.seen_values: dict[str, Counter[str]] = {v: Counter() for v in self._enums}
        # enumerated vendor field -> the values no spelling matched
        self.unmapped_values: dict[str, Counter[str]] = {}

    def _target(self, field: str, enums: dict[str, EnumField]) -> _Target:
        enum = enums.get(field)
        if enum is None:
            return _Target(field, None, None)
        spellings = enum.spellings()
        exact = enum.exact
        aliases = self.spec.enums.get(field, {})
        for spelling, value in aliases.items():
            spellings[spelling] = value
            spellings.setdefault(fold(spelling), value)
        return _Target(field, enum, spellings, exact, frozenset(aliases) - exact)

    @property
    def seen_fields(self) -> Counter[str]:
        """Every vendor field seen (OData annotations aside) -> records that carried it."""
        seen: Counter[str] = Counter(
            {name: n for name, n in self._fields.items() if not name.startswith("@")}
        )
        for shape, records in self._shapes.items():
            for name in shape:
                if not name.startswith("@"):
                    seen[name] += records
        return seen

    def reset_observations(self) -> None:
        """Forget what was seen, for a new run's figures."""
        self._shapes.clear()
        self._fields.clear()
        self.unknown.clear()
        self.unmapped_values.clear()
        for values in self.seen_values.values():
            values.clear()

    def disposition(self, vendor: str) -> str:
        """What this mapping does with a vendor field: "mapped" (to a canonical field, or read
        as the key, timestamp or deletion rule), "local" (kept in LocalFields), "dropped" (the
        file maps it to null) or "unmapped" (reported, not stored)."""
        if vendor in self._targets:
            return "dropped" if self._targets[vendor] is None else "mapped"
        if vendor in self._mapped or vendor in (self.key, self.timestamp):
            return "mapped"
        if vendor.startswith(self._prefixes) or self._keep_unknown:
            return "local"
        return "unmapped"

    def knows_value(self, vendor: str, value: str) -> bool | None:
        """Whether this mapping reads ``value`` of the enumerated vendor field ``vendor`` (as
        written, through an alias, or folded: what ``map`` accepts); None when ``vendor`` is not
        an enumerated field the mapping maps."""
        target = self._enums.get(vendor)
        if target is None or target.spellings is None:
            return None
        return value in target.spellings or fold(value) in target.spellings

    def vendor_fields(self, offered: frozenset[str] | None = None) -> list[str]:
        """The vendor fields worth asking for (``$select``): mapped ones, the deletion rule's,
        and local ones among ``offered`` (what the vendor's metadata lists), in a stable order."""
        wanted = {name for name, target in self._targets.items() if target is not None}
        wanted |= {self.key, self.timestamp}
        if self._deletion is not None:
            wanted.add(self._deletion.field)
        if offered is not None:
            wanted &= offered
            dropped = {name for name, target in self._targets.items() if target is None}
            # local ones: by prefix, or every field left over when unknown fields are kept
            wanted |= {n for n in offered if (n.startswith(self._prefixes) or self._keep_unknown)
                       and n not in dropped}  # fmt: skip
        return sorted(wanted)

    def map(
        self,
        raw: RawRecord,
        *,
        tenant: str,
        connection: str,
        system: str,
        now: datetime | None = None,
    ) -> Change | Rejection:
        """``now`` is the record's arrival time, for its freshness; without it (or without a
        ``refresh`` rule in the mapping) freshness does not lower the record's confidence."""
        try:
            return self._map(raw, tenant=tenant, connection=connection, system=system, now=now)
        except ValidationError as exc:
            # What the change itself refuses (an integer past 64 bits cannot be keyed, an
            # upsert with no field left): a bad record to set aside, not a failed sync.
            why = "; ".join(error["msg"] for error in exc.errors())
            return Rejection("invalid_value", f"{why} (mapping {self.label})")

    def _map(
        self,
        raw: RawRecord,
        *,
        tenant: str,
        connection: str,
        system: str,
        now: datetime | None,
    ) -> Change | Rejection:
        if raw.problem is not None:
            return Rejection("unreadable", raw.problem)
        data = raw.data
        if not raw.deleted:  # a deletion carries its key alone: not a shape the vendor serves
            shape = frozenset(data)
            if shape in self._shapes or len(self._shapes) < _MAX_SHAPES:
                self._shapes[shape] += 1
            else:
                self._fields.update(shape)
        if raw.external_id is None:
            return Rejection("missing_key", f"missing key: {self.key} is absent or empty")
        if raw.source_time is None:
            return Rejection("missing_timestamp", f"missing or unreadable {self.timestamp}")
        origin = Origin(
            system=system,
            connection=connection,
            external_id=raw.external_id,
            source_version=raw.source_version,
            source_time=raw.source_time,
        )
        rule = self._deletion
        if raw.deleted or (
            rule is not None and rule.field in data and _equal(data[rule.field], rule.equals)
        ):
            return Change(
                tenant=tenant, entity=self.entity, operation=Operation.DELETE, origin=origin
            )
        renames = self._renames
        fields: dict[str, Any] = {renames[k]: v for k, v in data.items() if k in renames}
        below: dict[str, float] = {}  # canonical field -> its score, where under 1.0
        invalid: list[str] = []
        for name in self._renamed_steps & data.keys():
            field = renames[name]
            fields[field] = self._transform(name, field, fields[field], below, invalid)
        typed = self._typed
        for name in [n for n in typed.keys() & data.keys() if type(data[n]) is str]:
            below[typed[name]] = score.COERCED
        problems: list[str] = []
        for name in self._enums.keys() & data.keys():
            target, value = self._enums[name], data[name]
            if value is not None and name in self._steps:
                value = self._transform(name, target.field, value, below, invalid)
            fields[target.field] = (
                self._enum(name, target, value, problems, below) if value is not None else None
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
            return Rejection(
                "unknown_enum_value", "; ".join(problems + invalid) + f" (mapping {self.label})"
            )
        if invalid:
            return Rejection("invalid_value", "; ".join(invalid) + f" (mapping {self.label})")
        for field, value in self._defaults.items():
            if fields.get(field) is None:
                fields[field] = value
                below[field] = score.DEFAULTED
        present = len(self._required) - len(
            [field for field in self._required if fields.get(field) is None]
        )
        fresh = 1.0
        status = fields.get(score.STATUS_FIELD)
        if now is not None and isinstance(status, str) and status in score.LIVE_STATUSES:
            fresh = score.freshness((now - raw.source_time).total_seconds(), self._window)
        return Change(
            tenant=tenant,
            entity=self.entity,
            fields=fields,
            origin=origin,
            confidence=score.record_score(len(fields), below, present, len(self._required), fresh),
            field_confidence=below,
        )

    def _transform(
        self, name: str, field: str, value: Any, below: dict[str, float], invalid: list[str]
    ) -> Any:
        if value is None:
            return None
        for _label, step in self._steps[name]:
            try:
                value = step(value)
            except TransformError as exc:  # it names the step
                invalid.append(f"{field}: {exc}")
                return value
        below[field] = min(below.get(field, 1.0), score.TRANSFORMED)
        return value

    def _enum(
        self,
        name: str,
        target: _Target,
        value: Any,
        problems: list[str],
        below: dict[str, float],
    ) -> Any:
        spellings = target.spellings or {}
        assert target.enum is not None  # noqa: S101 - spellings exist only for enum targets
        seen = self.seen_values[name]
        worst = below.get(target.field, 1.0)

        def one(item: Any) -> Any:
            nonlocal worst
            if not isinstance(item, str):
                return item  # the contract check names the wrong type
            if item in seen or len(seen) < _MAX_VALUES:
                seen[item] += 1
            found = spellings.get(item)
            if found is not None:
                if item not in target.exact:
                    worst = min(worst, score.ALIAS if item in target.aliases else score.FOLDED)
                return found
            found = spellings.get(fold(item))
            if found is not None:
                worst = min(worst, score.FOLDED)
                return found
            missed = self.unmapped_values.setdefault(name, Counter())
            if item in missed or len(missed) < _MAX_VALUES:
                missed[item] += 1
            shown = item if len(item) <= 40 else item[:37] + "..."
            problems.append(f"{target.field}: unknown enumeration value {shown!r}")
            return item

        if target.enum.many:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, list):
                out: Any = [one(i.strip() if isinstance(i, str) else i) for i in items]
            else:
                out = value
        else:
            out = one(value)
        if worst < 1.0:
            below[target.field] = worst
        return out


def _equal(value: Any, wanted: Any) -> bool:
    """``==`` that keeps flags and numbers apart (``0 == False`` in Python, not in a feed)."""
    return value == wanted and isinstance(value, bool) == isinstance(wanted, bool)
