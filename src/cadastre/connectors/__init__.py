"""Vendor connectors: ``sdk`` (what authors subclass), ``registry`` (entry points), then
``<family>/<vendor>/`` packages with the same files each."""

from cadastre.connectors.registry import available, connector_spec
from cadastre.connectors.sdk import AuthSpec, ClientCredentialsAuth, ConnectorSpec

__all__ = ["AuthSpec", "ClientCredentialsAuth", "ConnectorSpec", "available", "connector_spec"]
