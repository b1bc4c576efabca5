"""Connectors by name. Installed packages add theirs through the ``cadastre.connectors`` entry
point group (``"mls/reso" = "cadastre.connectors.mls.reso:CONNECTOR"``), so a third-party
connector is a ``pip install`` away and touches no file here."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from cadastre.connectors.sdk import ConnectorSpec
from cadastre.errors import ConfigurationError

GROUP = "cadastre.connectors"


@cache
def available() -> dict[str, ConnectorSpec]:
    found: dict[str, ConnectorSpec] = {}
    for entry in entry_points(group=GROUP):
        spec = entry.load()
        if not isinstance(spec, ConnectorSpec):
            raise ConfigurationError(
                f"entry point {entry.name} = {entry.value} is not a ConnectorSpec"
            )
        if spec.name != entry.name:
            raise ConfigurationError(f"entry point {entry.name} names connector {spec.name!r}")
        found[spec.name] = spec
    return found


def connector_spec(name: str) -> ConnectorSpec:
    known = available()
    try:
        return known[name]
    except KeyError:
        names = ", ".join(sorted(known)) or "none installed"
        raise ConfigurationError(f"unknown connector {name!r}; available: {names}") from None
