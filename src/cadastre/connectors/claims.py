"""The ownership claims of configured connections (their connector package's ``claims`` and their
config's ``owns``), checked against the registry and each other (``cadastre.ownership.claims``).
Here, not in ``ownership``, because finding a connector's claims needs the connector registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadastre.connectors.registry import connector_spec
from cadastre.ownership.claims import Claim, check_claims, claims_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from cadastre.ownership import OwnershipRegistry


def connection_claims(
    name: str, system: str, connector: str, config: Mapping[str, Any]
) -> list[Claim]:
    spec = connector_spec(connector)
    return claims_of(name, system, spec.claims, config.get("owns"), connector)


def check_connections(
    registry: OwnershipRegistry, connections: Iterable[tuple[str, str, str, Mapping[str, Any]]]
) -> None:
    """``(name, system, connector, config)`` of each connection: raises ``OwnershipDrift``
    (a ``ConfigurationError``) naming every contradiction."""
    claims: list[Claim] = []
    for name, system, connector, config in connections:
        claims += connection_claims(name, system, connector, config)
    check_claims(registry, claims)
