"""The system-of-record registry: for every (entity, field) the one owning system, the other
systems allowed to write it and the conflict policy between them.

Built once from a ``RegistryFile`` and a ``FieldCatalogue``; every check runs at build time so that
``decide`` is a dictionary lookup. Build collects every problem and raises one
``OwnershipRegistryError`` listing them all, so a file is fixed in one pass.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from cadastre.errors import OwnershipRegistryError
from cadastre.ownership.catalogue import FieldCatalogue
from cadastre.ownership.patterns import Pattern, parse_pattern
from cadastre.ownership.spec import ConflictPolicy, PlatformAccess, RegistryFile, RuleSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based position in the file's `rules` list
    pattern: Pattern
    owner: str
    writers: frozenset[str]
    conflict: ConflictPolicy | None
    note: str = ""
    line: int | None = None  # 1-based line in the file, when known
    platform: PlatformAccess = PlatformAccess.REFUSE  # may the unified API write the fields?

    @property
    def match(self) -> str:
        return self.pattern.text

    def label(self) -> str:
        where = f", line {self.line}" if self.line else ""
        return f"rule {self.index} '{self.match}'{where}"

    def terms(self) -> tuple[str, frozenset[str], ConflictPolicy | None, PlatformAccess]:
        return (self.owner, self.writers, self.conflict, self.platform)


# The vendor's own modification time: set by the system that holds the record, never written.
VENDOR_CLOCK = "ModificationTimestamp"


class Access(StrEnum):
    OWNER = "owner"
    WRITER = "writer"  # allowed, under the rule's conflict policy
    FORBIDDEN = "forbidden"  # the field has an owner and this system is not allowed to write it
    UNDECLARED = "undeclared"  # no rule covers the field (or the field is not in the contract)


@dataclass(frozen=True)
class Decision:
    entity: str
    field: str
    system: str
    access: Access
    rule: Rule | None
    # Whether the unified API may write the field (routed to its owner): the winning rule's
    # ``platform``, and always REFUSE for the entity's key field and fields no rule covers.
    platform: PlatformAccess = PlatformAccess.REFUSE

    @property
    def routed(self) -> bool:
        return self.platform is PlatformAccess.ROUTE

    @property
    def creatable(self) -> bool:
        """The unified API may give the field when it creates a record (``route`` or
        ``create``)."""
        return self.platform in (PlatformAccess.ROUTE, PlatformAccess.CREATE)

    @property
    def allowed(self) -> bool:
        return self.access in (Access.OWNER, Access.WRITER)

    @property
    def owner(self) -> str | None:
        return self.rule.owner if self.rule else None

    @property
    def conflict(self) -> ConflictPolicy | None:
        return self.rule.conflict if self.rule else None


class OwnershipRegistry:
    def __init__(
        self,
        systems: Mapping[str, str],
        rules: tuple[Rule, ...],
        catalogue: FieldCatalogue,
        resolved: Mapping[tuple[str, str], Rule],
        source: str = "<registry>",
    ) -> None:
        self.systems = dict(systems)  # name -> description
        self.rules = rules
        self.catalogue = catalogue
        self.source = source
        self._resolved = dict(resolved)
        # The registry is immutable once built, so a decision is computed once per (entity,
        # field, system): a sync asks it for every field of every record.
        self._decisions: dict[tuple[str, str, str], Decision] = {}
        self._tables: dict[tuple[str, str, str], dict[str, Decision]] = {}
        self._allowed: dict[tuple[str, str], frozenset[str]] = {}

    @classmethod
    def build(
        cls,
        spec: RegistryFile,
        catalogue: FieldCatalogue | Mapping[str, frozenset[str]],
        *,
        source: str = "<registry>",
        lines: Mapping[int, int] | None = None,
    ) -> OwnershipRegistry:
        """``lines`` maps a rule's 1-based index to its line in the file, for messages."""
        catalogue = FieldCatalogue.of(catalogue)
        rules, problems = _compile_rules(spec, catalogue, lines or {})
        resolved, tie_problems = _resolve(rules, catalogue)
        problems += tie_problems
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise OwnershipRegistryError(f"{source}: invalid ownership registry:\n{listing}")
        systems = {name: s.description for name, s in spec.systems.items()}
        return cls(systems, tuple(rules), catalogue, resolved, source)

    # ------------------------------------------------------------------------------ questions

    def knows(self, entity: str, field: str) -> bool:
        return field in self.catalogue.fields.get(entity, frozenset())

    def entities(self) -> list[str]:
        return sorted(self.catalogue.fields)

    def fields(self, entity: str) -> frozenset[str]:
        return self.catalogue.fields.get(entity, frozenset())

    def rule_for(self, entity: str, field: str) -> Rule | None:
        return self._resolved.get((entity, field))

    def owner_of(self, entity: str, field: str) -> str | None:
        rule = self.rule_for(entity, field)
        return rule.owner if rule else None

    def decisions(self, entity: str, system: str) -> Mapping[str, Decision]:
        """``decide`` for every field of the entity at once (field -> decision), built once."""
        key = (entity, "", system)  # "" is no wire name: it cannot collide with a field's key
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {
                field: self.decide(entity, field, system) for field in self.fields(entity)
            }
        return table

    def allowed_fields(self, entity: str, system: str) -> frozenset[str]:
        """The fields of the entity that ``system`` may write (as owner or declared writer)."""
        key = (entity, system)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = frozenset(
                f for f, d in self.decisions(entity, system).items() if d.allowed
            )
        return allowed

    def decide(self, entity: str, field: str, system: str) -> Decision:
        key = (entity, field, system)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions[key] = self._decide(entity, field, system)
        return decision

    def _decide(self, entity: str, field: str, system: str) -> Decision:
        rule = self.rule_for(entity, field)
        if rule is None:
            access = Access.UNDECLARED
        elif system == rule.owner:
            access = Access.OWNER
        elif system in rule.writers:
            access = Access.WRITER
        else:
            access = Access.FORBIDDEN
        return Decision(entity, field, system, access, rule, self.platform(entity, field))

    def platform(self, entity: str, field: str) -> PlatformAccess:
        """Whether the unified API may accept a platform write of the field (and route it to
        the owner). Key fields never (a record's id is its owner's to give), nor
        ``ModificationTimestamp`` (the owner's clock)."""
        rule = self.rule_for(entity, field)
        if rule is None or field in (self.catalogue.key_fields.get(entity), VENDOR_CLOCK):
            return PlatformAccess.REFUSE
        return rule.platform

    def routed_fields(self, entity: str) -> frozenset[str]:
        """The fields of the entity the unified API may write."""
        return frozenset(
            f for f in self.fields(entity) if self.platform(entity, f) is PlatformAccess.ROUTE
        )

    def coverage(self, entity: str) -> frozenset[str]:
        """The fields of ``entity`` that no rule covers (empty when every field has an owner)."""
        return frozenset(f for f in self.fields(entity) if (entity, f) not in self._resolved)

    def record_owner(self, entity: str) -> str | None:
        """The system that may create and delete ``entity`` records: the owner of the entity's
        key field, else the owner named by an ``Entity.*`` rule, else nobody."""
        key = self.catalogue.key_fields.get(entity)
        if key is not None and (owner := self.owner_of(entity, key)) is not None:
            return owner
        for rule in self.rules:
            if rule.pattern.entity == entity and rule.pattern.field == "*":
                return rule.owner
        return None

    def shared_fields(self) -> list[tuple[str, str, Rule]]:
        """(entity, field, rule) for every field some system besides its owner may write."""
        return sorted(
            ((e, f, r) for (e, f), r in self._resolved.items() if r.writers),
            key=lambda t: (t[0], t[1]),
        )


# ---------------------------------------------------------------------------------- building


def _compile_rules(
    spec: RegistryFile, catalogue: FieldCatalogue, lines: Mapping[int, int]
) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    problems: list[str] = []
    seen: dict[str, Rule] = {}
    for index, raw in enumerate(spec.rules, start=1):
        line = lines.get(index)
        label = f"rule {index} '{raw.match}'" + (f", line {line}" if line else "")
        try:
            pattern = parse_pattern(raw.match)
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            continue
        rule = Rule(
            index, pattern, raw.owner, frozenset(raw.writers), raw.conflict, raw.note, line,
            raw.platform,
        )  # fmt: skip
        found = [f"{label}: {p}" for p in _rule_problems(raw, pattern, spec, catalogue)]
        if raw.match in seen:
            first = seen[raw.match]
            claimants = (
                f"both claim owner {raw.owner}"
                if first.owner == raw.owner
                else f"owners {first.owner} and {raw.owner} both claim it"
            )
            found.append(f"{label}: repeats the match of {first.label()}; {claimants}")
        seen.setdefault(raw.match, rule)
        problems += found
        if not found:
            rules.append(rule)
    return rules, problems


def _rule_problems(
    raw: RuleSpec, pattern: Pattern, spec: RegistryFile, catalogue: FieldCatalogue
) -> list[str]:
    problems: list[str] = []
    declared = sorted(spec.systems)
    for role, name in [("owner", raw.owner), *(("writer", w) for w in raw.writers)]:
        if name not in spec.systems:
            problems.append(
                f"{role} '{name}' is not a declared system (declared: {', '.join(declared)})"
            )
    if raw.owner in raw.writers:
        problems.append(f"owner '{raw.owner}' is also listed as a writer")
    if len(set(raw.writers)) != len(raw.writers):
        problems.append("a writer is listed twice")
    if raw.writers and raw.conflict is None:
        problems.append(
            "writers need a conflict policy: add `conflict: owner_wins` or `conflict: newest_wins`"
        )
    if raw.conflict is not None and not raw.writers:
        problems.append(f"`conflict: {raw.conflict.value}` has no effect without writers")
    problems += _contract_problems(pattern, catalogue)
    return problems


def _contract_problems(pattern: Pattern, catalogue: FieldCatalogue) -> list[str]:
    if pattern.entity is not None and pattern.entity not in catalogue.fields:
        return [f"unknown entity {pattern.entity}{_hint(pattern.entity, catalogue.fields)}"]
    entities = [pattern.entity] if pattern.entity else sorted(catalogue.fields)
    if any(pattern.matches(e, f) for e in entities for f in catalogue.fields[e]):
        return []
    if pattern.field_is_glob:
        scope = pattern.entity or "any entity"
        return [f"'{pattern.field}' matches no field of {scope}"]
    if pattern.entity is None:
        return [f"no entity has a field {pattern.field}"]
    hint = _hint(pattern.field, catalogue.fields[pattern.entity])
    return [f"{pattern.entity} has no field {pattern.field} in the contract{hint}"]


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _resolve(
    rules: list[Rule], catalogue: FieldCatalogue
) -> tuple[dict[tuple[str, str], Rule], list[str]]:
    resolved: dict[tuple[str, str], Rule] = {}
    problems: list[str] = []
    reported: set[tuple[int, int]] = set()
    for entity in sorted(catalogue.fields):
        candidates = [r for r in rules if r.pattern.matches_entity(entity)]
        for field in sorted(catalogue.fields[entity]):
            matching = [r for r in candidates if r.pattern.matches(entity, field)]
            if not matching:
                continue
            best = max(r.pattern.specificity for r in matching)
            tied = [r for r in matching if r.pattern.specificity == best]
            winner = tied[0]
            for other in tied[1:]:
                pair = (winner.index, other.index)
                if other.terms() != winner.terms() and pair not in reported:
                    reported.add(pair)
                    problems.append(_tie_message(entity, field, winner, other))
            resolved[(entity, field)] = winner
    return resolved, problems


def _tie_message(entity: str, field: str, a: Rule, b: Rule) -> str:
    if a.owner != b.owner:
        what = f"owner '{a.owner}' and owner '{b.owner}'"
    elif a.platform != b.platform and (a.writers, a.conflict) == (b.writers, b.conflict):
        what = f"owner '{a.owner}' with platform {a.platform.value} and {b.platform.value}"
    else:
        what = f"owner '{a.owner}' with different writers or conflict policies"
    return (
        f"{entity}.{field} is claimed with equal specificity by {a.label()} and {b.label()}: "
        f"{what}; make one rule more specific or merge them"
    )
