"""Ownership drift: what each connection believes its system owns, checked at configuration load.

A connector package declares ``claims`` (the Buildium package: ``Lease.*``, ``Unit.*``,
``Resident.*``); a connection's config may add ``owns: [Lease.RentAmount]``. Every claim is
checked against the registry and against the other connections' claims:

- an exact field claim (``Lease.RentAmount``) contradicts the registry when the registry gives the
  field another owner (a writer is not an owner);
- an entity claim (``Lease.*``) says "we hold the Lease records": it contradicts the registry when
  the entity's record owner is another system (the owner of a field inside may still differ:
  ``Resident.ContactKey`` is core's while the PMS holds residents);
- two connections of **different** systems that claim one field (two systems that both believe
  they own the lease fields) are refused, naming both systems, both connections and the fields.
  Two connections of one system (two PMS accounts) may claim the same.

Every problem is reported at once, in one ``ConfigurationError``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cadastre.errors import ConfigurationError
from cadastre.ownership.patterns import parse_pattern

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from cadastre.ownership.registry import OwnershipRegistry


@dataclass(frozen=True)
class Claim:
    connection: str
    system: str
    pattern: str  # "Lease.*" or "Lease.RentAmount"
    source: str  # where it was declared: "connector pms/buildium", "config owns"


class OwnershipDrift(ConfigurationError):
    """Connections whose claims contradict the registry or each other."""


def check_claims(registry: OwnershipRegistry, claims: Iterable[Claim]) -> None:
    problems: list[str] = []
    held: dict[tuple[str, str], list[Claim]] = defaultdict(list)  # (entity, field) -> claims
    for claim in claims:
        who = f"connection {claim.connection!r} (system {claim.system}, {claim.source})"
        try:
            pattern = parse_pattern(claim.pattern)
        except ValueError as exc:
            problems.append(f"{who} claims {claim.pattern!r}: {exc}")
            continue
        entities = [pattern.entity] if pattern.entity else registry.entities()
        fields = [
            (e, f) for e in entities for f in sorted(registry.fields(e)) if pattern.matches(e, f)
        ]
        if not fields:
            problems.append(f"{who} claims {claim.pattern}, which matches no field")
            continue
        if pattern.field_is_glob:
            for entity in sorted({e for e, _ in fields}):
                owner = registry.record_owner(entity)
                if owner is not None and owner != claim.system:
                    rule = registry.rule_for(entity, registry.catalogue.key_fields.get(entity, ""))
                    by = f" ({rule.label()})" if rule is not None else ""
                    problems.append(
                        f"{who} claims {claim.pattern}, but the registry{by} gives {entity} "
                        f"records to {owner}"
                    )
        else:
            ((entity, name),) = fields
            rule = registry.rule_for(entity, name)
            if rule is not None and rule.owner != claim.system:
                role = "a writer" if claim.system in rule.writers else "not the owner"
                problems.append(
                    f"{who} claims {entity}.{name}, but the registry ({rule.label()}) gives it "
                    f"to {rule.owner}; {claim.system} is {role}"
                )
        for key in fields:
            held[key].append(claim)
    problems += _overlaps(held)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise OwnershipDrift(f"ownership drift: connections claim what is not theirs:\n{listing}")


def _overlaps(held: dict[tuple[str, str], list[Claim]]) -> list[str]:
    # (system a, connection a, system b, connection b) -> fields both claim
    pairs: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for (entity, name), claims in sorted(held.items()):
        for i, a in enumerate(claims):
            for b in claims[i + 1 :]:
                if a.system == b.system:
                    continue
                first, second = sorted([a, b], key=lambda c: (c.system, c.connection))
                key = (first.system, first.connection, second.system, second.connection)
                field = f"{entity}.{name}"
                if field not in pairs[key]:
                    pairs[key].append(field)
    out = []
    for (sys_a, conn_a, sys_b, conn_b), fields in pairs.items():
        shown = ", ".join(fields[:8]) + (f" and {len(fields) - 8} more" if len(fields) > 8 else "")
        out.append(
            f"systems {sys_a} (connection {conn_a!r}) and {sys_b} (connection {conn_b!r}) both "
            f"claim {len(fields)} field(s): {shown}"
        )
    return out


def claims_of(
    connection: str, system: str, connector_claims: Sequence[str], owns: object, connector: str
) -> list[Claim]:
    """A connection's claims: its connector package's and its config's ``owns`` list."""
    out = [Claim(connection, system, p, f"connector {connector}") for p in connector_claims]
    if owns is None:
        return out
    if not isinstance(owns, list) or not all(isinstance(p, str) for p in owns):
        raise ConfigurationError(
            f"connection {connection!r}: config 'owns' must be a list of 'Entity.Field' patterns"
        )
    return out + [Claim(connection, system, p, "config owns") for p in owns]
