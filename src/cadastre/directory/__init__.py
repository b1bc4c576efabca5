"""The directory: tenants, their API keys and their connections, and the console's operators,
over the Store port."""

from cadastre.directory.connections import (
    ConnectionService,
    ConnectionsFile,
    ConnectionSpec,
    parse_connections_yaml,
)
from cadastre.directory.keys import IssuedKey, KeyService
from cadastre.directory.operators import OperatorService, SignedIn, Visitor
from cadastre.directory.tenants import TenantService

__all__ = [
    "ConnectionService",
    "ConnectionSpec",
    "ConnectionsFile",
    "IssuedKey",
    "KeyService",
    "OperatorService",
    "SignedIn",
    "TenantService",
    "Visitor",
    "parse_connections_yaml",
]
