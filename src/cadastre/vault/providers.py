"""Credential providers for the foundation: environment variables and a local YAML file.

A connection never holds a secret; it holds a *reference* such as ``env:AUSTIN_MLS`` or
``file:austin-mls``. These providers turn a reference into a ``Credential`` whose fields are
``Secret`` objects (they do not print) and register each value with the log redactor. The auth
service (vault issue) replaces them with the encrypted vault behind the same port.

- ``env:NAME``: every variable ``NAME__FIELD`` becomes field ``field``
  (``AUSTIN_MLS__CLIENT_SECRET`` -> ``client_secret``).
- ``file:NAME``: entry ``NAME`` of the credentials file, a mapping of field -> value. The file must
  not be readable by group or others, as ssh insists for private keys.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import yaml

from cadastre.config import DuplicateKeyError, load_yaml
from cadastre.errors import CredentialError
from cadastre.observe import SECRETS
from cadastre.ports import Credential, CredentialProvider, Secret

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def _credential(reference: str, raw: Mapping[str, str]) -> Credential:
    # Every field is registered, short ones included: SECRETS scrubs only values of at least
    # SecretRegistry.MIN_LENGTH characters by value (a short client_id or region is not worth
    # eating ordinary words for); short secrets rely on the key-name and shape redaction rules.
    for value in raw.values():
        SECRETS.add(value)
    return Credential(reference=reference, fields={k: Secret(v) for k, v in raw.items()})


class EnvCredentialProvider:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    async def resolve(self, reference: str) -> Credential:
        name = _name(reference, "env")
        prefix = f"{name.upper()}__"
        raw = {
            key[len(prefix) :].lower(): value
            for key, value in self._environ.items()
            if key.startswith(prefix) and value
        }
        if not raw:
            raise CredentialError(
                f"credential {reference!r}: no environment variables {prefix}<FIELD> are set"
            )
        return _credential(reference, raw)


class FileCredentialProvider:
    def __init__(self, path: Path) -> None:
        self._path = path

    async def resolve(self, reference: str) -> Credential:
        name = _name(reference, "file")
        if not self._path.is_file():
            raise CredentialError(f"credential {reference!r}: file {self._path} does not exist")
        mode = self._path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialError(
                f"credential {reference!r}: {self._path} is readable by others; chmod 600 it"
            )
        try:
            text = self._path.read_text(encoding="utf-8")
            document = load_yaml(text, source=str(self._path)) or {}
        except yaml.YAMLError as exc:
            # the parser's message quotes the offending line, which may hold a secret
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" near line {line + 1}" if line is not None else ""
            why = " (a key is given twice)" if isinstance(exc, DuplicateKeyError) else ""
            raise CredentialError(
                f"credentials file {self._path} is not valid YAML{where}{why}"
            ) from None
        entry = document.get(name) if isinstance(document, dict) else None
        if not isinstance(entry, dict) or not entry:
            raise CredentialError(f"credential {reference!r}: no entry {name!r} in {self._path}")
        return _credential(reference, {str(k): str(v) for k, v in entry.items()})


class CredentialResolver:
    """Dispatches a reference to the provider for its scheme (``env:``, ``file:``)."""

    def __init__(self, providers: Mapping[str, CredentialProvider]) -> None:
        self._providers = dict(providers)

    async def resolve(self, reference: str) -> Credential:
        scheme, _, rest = reference.partition(":")
        provider = self._providers.get(scheme)
        if provider is None or not rest:
            known = ", ".join(f"{s}:NAME" for s in sorted(self._providers))
            raise CredentialError(f"credential reference {reference!r} is not one of: {known}")
        return await provider.resolve(reference)


def _name(reference: str, scheme: str) -> str:
    prefix = f"{scheme}:"
    if not reference.startswith(prefix) or len(reference) == len(prefix):
        raise CredentialError(f"credential reference {reference!r} does not start with {prefix!r}")
    return reference[len(prefix) :]
