"""The auth service: credentials sealed at rest (``crypto``, ``service``), their schemes
(``schemes``), the token lifecycle - refresh, single flight, rotation, consent - (``tokens``) and
the cross-process locks it takes (``locks``, ``locks_redis``). It makes no HTTP call itself: token,
login and key-rotation endpoints are reached through the ``TokenEndpoint`` port, which
``bootstrap`` wires to the connection's gateway."""

from cadastre.vault.crypto import (
    EnvMasterKeys,
    FileMasterKeys,
    LocalKeyring,
    MasterKeyProvider,
    RowIdentity,
)
from cadastre.vault.locks import FileLockBackend, MemoryLockBackend
from cadastre.vault.locks_redis import RedisLockBackend
from cadastre.vault.schemes import SCHEMES, Scheme, SchemeSpec, scheme_spec
from cadastre.vault.service import OpenedCredential, RewrapReport, Vault
from cadastre.vault.tokens import Defaults, TokenManager

__all__ = [
    "SCHEMES",
    "Defaults",
    "EnvMasterKeys",
    "FileLockBackend",
    "FileMasterKeys",
    "LocalKeyring",
    "MasterKeyProvider",
    "MemoryLockBackend",
    "OpenedCredential",
    "RedisLockBackend",
    "RewrapReport",
    "RowIdentity",
    "Scheme",
    "SchemeSpec",
    "TokenManager",
    "Vault",
    "scheme_spec",
]
