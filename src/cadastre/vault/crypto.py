"""Envelope encryption for the vault (``cryptography``'s AES-GCM; nothing here is hand-rolled).

Each secret field gets a fresh 256-bit data key; the value is sealed under it, and the data key is
wrapped under a master key that has an id. A master-key rotation therefore re-wraps 32-byte data
keys and never touches a value. Both layers carry associated data naming the row -
``(tenant, credential, field)``, plus the master key id for the wrapping - so a ciphertext copied
into another row, or a wrapped key relabelled with another key id, fails to open.

Master keys sit behind ``MasterKeyProvider``, an interface shaped like a KMS (wrap and unwrap a data
key by key id; the key material never leaves the provider), so a cloud KMS can be added beside the
two local providers: ``EnvMasterKeys`` (``CADASTRE_VAULT_MASTER_KEY=<id>:<base64>``, older keys in
``CADASTRE_VAULT_PREVIOUS_KEYS``) and ``FileMasterKeys`` (a JSON keyring, mode 0600, re-read when
it changes, so a reader process learns a new key without a restart).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cadastre.errors import ConfigurationError, DecryptionFailed
from cadastre.ports import SealedSecret

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_AAD_PREFIX = b"cadastre-vault-v1"


class MasterKeyProvider(Protocol):
    def current_key_id(self) -> str:
        """The key new data keys are wrapped under."""
        ...

    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Raise ``DecryptionFailed`` for an unknown key id or a wrapping that does not open."""
        ...


@dataclass(frozen=True)
class RowIdentity:
    """What a sealed value is bound to."""

    tenant: str
    credential: str
    field: str

    def aad(self) -> bytes:
        return b"\0".join(
            (_AAD_PREFIX, *(p.encode() for p in (self.tenant, self.credential, self.field)))
        )


def seal(keys: MasterKeyProvider, row: RowIdentity, value: str) -> SealedSecret:
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    key_id = keys.current_key_id()
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, value.encode(), row.aad())
    wrapped = keys.wrap(key_id, data_key, _wrap_aad(row, key_id))
    return SealedSecret(row.field, key_id, wrapped, ciphertext)


def unseal(keys: MasterKeyProvider, row: RowIdentity, sealed: SealedSecret) -> str:
    where = f"secret {row.field!r} of credential {row.credential!r}"
    if sealed.field != row.field:
        raise DecryptionFailed(f"{where}: the sealed value belongs to field {sealed.field!r}")
    data_key = keys.unwrap(sealed.key_id, sealed.wrapped_key, _wrap_aad(row, sealed.key_id))
    nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
    try:
        return AESGCM(data_key).decrypt(nonce, body, row.aad()).decode()
    except (InvalidTag, ValueError, UnicodeDecodeError):
        raise DecryptionFailed(f"{where} does not open: it was not sealed for this row") from None


def rewrap(keys: MasterKeyProvider, row: RowIdentity, sealed: SealedSecret) -> SealedSecret:
    """The same sealed value with its data key wrapped under the current master key."""
    data_key = keys.unwrap(sealed.key_id, sealed.wrapped_key, _wrap_aad(row, sealed.key_id))
    key_id = keys.current_key_id()
    wrapped = keys.wrap(key_id, data_key, _wrap_aad(row, key_id))
    return SealedSecret(sealed.field, key_id, wrapped, sealed.ciphertext)


def _wrap_aad(row: RowIdentity, key_id: str) -> bytes:
    return row.aad() + b"\0" + key_id.encode()


# ------------------------------------------------------------------------------ local keyrings


class LocalKeyring:
    """Master keys held in this process: ``current`` and the older ones still being read."""

    def __init__(self, current: str, keys: Mapping[str, bytes]) -> None:
        if current not in keys:
            raise ConfigurationError(f"vault keyring: the current key {current!r} is not in it")
        for key_id, material in keys.items():
            _check_key(key_id, material)
        self._current = current
        self._keys = dict(keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(current={self._current!r}, keys={sorted(self._keys)})"

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def current_key_id(self) -> str:
        return self._current

    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self._key(key_id)).encrypt(nonce, data_key, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        material = self._key(key_id)
        try:
            return AESGCM(material).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            raise DecryptionFailed(
                f"a data key wrapped under master key {key_id!r} does not open for this row"
            ) from None

    def _key(self, key_id: str) -> bytes:
        material = self._keys.get(key_id)
        if material is None:
            raise DecryptionFailed(
                f"master key {key_id!r} is not in the keyring (known: {', '.join(self.key_ids)})"
            )
        return material


class EnvMasterKeys(LocalKeyring):
    """``CADASTRE_VAULT_MASTER_KEY=<id>:<base64 of 32 bytes>``; keys still being rotated away from
    in ``CADASTRE_VAULT_PREVIOUS_KEYS`` (comma-separated, same form). Rotating takes two phases,
    so no worker meets a key it cannot read: add the new key to the second variable everywhere;
    then make it the first (the old one moving to the second), run ``cadastre vault
    rotate-master``, and drop the old one (docs/vault.md)."""

    @classmethod
    def parse(cls, current: str, previous: str = "") -> EnvMasterKeys:
        first = _parse_entry(current, "CADASTRE_VAULT_MASTER_KEY")
        older = [
            _parse_entry(entry, "CADASTRE_VAULT_PREVIOUS_KEYS")
            for entry in previous.split(",")
            if entry.strip()
        ]
        return cls(first[0], dict([*older, first]))


class FileMasterKeys(LocalKeyring):
    """A JSON keyring file ``{"current": id, "keys": {id: base64}}``, mode 0600. It is re-read
    when its modification time has changed, looked at before each seal and each unwrap, so every
    process reading the vault follows a rotation (and a retirement) without a restart."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self._path = path
        if create and not path.exists():
            _create_keyring(path)
        current, keys, self._mtime = _read_keyring(path)
        super().__init__(current, keys)

    def current_key_id(self) -> str:
        self._reload_if_changed()
        return super().current_key_id()

    def _key(self, key_id: str) -> bytes:
        self._reload_if_changed()  # one stat: decryptions are rare (tokens are held in memory)
        return super()._key(key_id)

    def _reload_if_changed(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError:
            return  # keep what was read; the next look may find it again
        if mtime == self._mtime:
            return
        current, keys, self._mtime = _read_keyring(self._path)
        self._current, self._keys = current, keys

    def add_key(self) -> str:
        """Make a new key current (older keys stay, for reading). Returns its id."""
        _, keys, _ = _read_keyring(self._path)
        key_id = new_key_id()
        keys[key_id] = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        write_keyring(self._path, key_id, keys)
        self._adopt()
        return key_id

    def retire(self, keep: Iterable[str]) -> list[str]:
        """Remove every key but ``keep`` and the current one; returns the removed ids."""
        current, keys, _ = _read_keyring(self._path)
        kept = {*keep, current}
        removed = sorted(k for k in keys if k not in kept)
        write_keyring(self._path, current, {k: v for k, v in keys.items() if k in kept})
        self._adopt()
        return removed

    def _adopt(self) -> None:
        """Take what was just written, whatever its modification time (two writes within the
        file system's timestamp resolution would look unchanged)."""
        self._current, self._keys, self._mtime = _read_keyring(self._path)


def _create_keyring(path: Path) -> None:
    """A first keyring, created only if none exists: two processes starting at once must not each
    write a key of their own (one would seal with a key the file no longer holds). Written whole
    to a private temporary file, then linked into place, which fails if the file appeared."""
    key_id = new_key_id()
    material = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    fresh = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
    write_keyring(fresh, key_id, {key_id: material})
    try:
        os.link(fresh, path)
    except FileExistsError:
        pass  # another process made it first; it is read next
    finally:
        fresh.unlink()


def new_key_id(now: datetime | None = None) -> str:
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"mk-{day}-{secrets.token_hex(3)}"


def write_keyring(path: Path, current: str, keys: Mapping[str, bytes]) -> None:
    """Replace the keyring file atomically (a reader sees the old file or the new one, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(
        {"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}},
        option=orjson.OPT_INDENT_2,
    )
    fd, tmp = tempfile.mkstemp(prefix=".keyring-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    Path(tmp).replace(path)


def _read_keyring(path: Path) -> tuple[str, dict[str, bytes], int]:
    where = f"vault key file {path}"
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(f"{where} is readable by others; chmod 600 it")
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"{where} does not exist") from None
    except orjson.JSONDecodeError:
        raise ConfigurationError(f"{where} is not JSON") from None
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror}") from None
    if not (
        isinstance(document, dict)
        and isinstance(current := document.get("current"), str)
        and isinstance(entries := document.get("keys"), dict)
    ):
        raise ConfigurationError(f'{where} must be {{"current": id, "keys": {{id: base64}}}}')
    keys = {str(k): _decode(v, f"{where}, key {k!r}") for k, v in entries.items()}
    if current not in keys:
        raise ConfigurationError(f"{where}: the current key {current!r} is not in it")
    return current, keys, info.st_mtime_ns


def _parse_entry(entry: str, variable: str) -> tuple[str, bytes]:
    key_id, sep, encoded = entry.strip().partition(":")
    if not sep:
        raise ConfigurationError(f"{variable} must be <key id>:<base64 of {KEY_BYTES} bytes>")
    material = _decode(encoded, f"{variable}, key {key_id!r}")
    _check_key(key_id, material)
    return key_id, material


def _decode(value: object, where: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # the value itself is never quoted: it is the key
        raise ConfigurationError(f"{where} is not base64") from None


def _check_key(key_id: str, material: bytes) -> None:
    if not _KEY_ID.fullmatch(key_id):
        raise ConfigurationError(f"master key id {key_id!r} must match {_KEY_ID.pattern}")
    if len(material) != KEY_BYTES:
        raise ConfigurationError(
            f"master key {key_id!r} has {len(material)} bytes; AES-256 needs {KEY_BYTES}"
        )
