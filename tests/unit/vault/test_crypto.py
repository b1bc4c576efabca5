"""Envelope encryption: values bound to their row, master keys by id, rotation by re-wrapping."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cadastre.errors import ConfigurationError, DecryptionFailed
from cadastre.vault.crypto import (
    EnvMasterKeys,
    FileMasterKeys,
    LocalKeyring,
    RowIdentity,
    rewrap,
    seal,
    unseal,
)

if TYPE_CHECKING:
    from pathlib import Path

CANARY = "canary-3f1e9b7d-not-a-real-secret"
ROW = RowIdentity("acme", "austin-mls", "client_secret")


def keyring(*ids: str) -> LocalKeyring:
    return LocalKeyring(ids[0], {i: AESGCM.generate_key(bit_length=256) for i in ids})


def test_a_sealed_value_opens_for_its_row_and_shows_nothing_in_the_clear() -> None:
    keys = keyring("k1")
    sealed = seal(keys, ROW, CANARY)
    assert CANARY.encode() not in sealed.ciphertext + sealed.wrapped_key
    assert sealed.key_id == "k1"
    assert unseal(keys, ROW, sealed) == CANARY
    assert CANARY not in repr(sealed)


def test_two_seals_of_one_value_differ() -> None:
    keys = keyring("k1")
    a, b = seal(keys, ROW, CANARY), seal(keys, ROW, CANARY)
    assert a.ciphertext != b.ciphertext
    assert a.wrapped_key != b.wrapped_key


@pytest.mark.parametrize(
    "other",
    [
        RowIdentity("globex", "austin-mls", "client_secret"),  # another tenant
        RowIdentity("acme", "bridge", "client_secret"),  # another credential
    ],
)
def test_a_ciphertext_moved_to_another_row_does_not_open(other: RowIdentity) -> None:
    keys = keyring("k1")
    sealed = seal(keys, ROW, CANARY)
    with pytest.raises(DecryptionFailed):
        unseal(keys, other, sealed)


def test_swapping_two_fields_of_one_credential_does_not_open() -> None:
    keys = keyring("k1")
    secret = seal(keys, ROW, CANARY)
    other_row = RowIdentity("acme", "austin-mls", "client_id")
    client_id = seal(keys, other_row, "public-id")
    swapped = replace(client_id, field=ROW.field)  # client_id's sealed bytes in the secret's row
    with pytest.raises(DecryptionFailed):
        unseal(keys, ROW, swapped)
    with pytest.raises(DecryptionFailed, match="belongs to field"):
        unseal(keys, other_row, secret)


def test_a_wrapped_key_relabelled_with_another_key_id_does_not_open() -> None:
    keys = keyring("k2", "k1")
    sealed = seal(keys, ROW, CANARY)
    with pytest.raises(DecryptionFailed):
        unseal(keys, ROW, replace(sealed, key_id="k1"))


def test_a_flipped_bit_does_not_open() -> None:
    keys = keyring("k1")
    sealed = seal(keys, ROW, CANARY)
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        unseal(keys, ROW, replace(sealed, ciphertext=sealed.ciphertext[:-1] + flipped))


def test_rewrap_moves_the_data_key_and_leaves_the_value_alone() -> None:
    old = keyring("k1")
    sealed = seal(old, ROW, CANARY)
    both = LocalKeyring("k2", {"k1": old._keys["k1"], "k2": AESGCM.generate_key(bit_length=256)})
    moved = rewrap(both, ROW, sealed)
    assert moved.key_id == "k2"
    assert moved.ciphertext == sealed.ciphertext
    assert unseal(both, ROW, moved) == CANARY
    only_new = LocalKeyring("k2", {"k2": both._keys["k2"]})
    assert unseal(only_new, ROW, moved) == CANARY
    with pytest.raises(DecryptionFailed, match="'k1' is not in the keyring"):
        unseal(only_new, ROW, sealed)


def test_env_keys_parse_and_their_errors_never_quote_the_key() -> None:
    material = base64.b64encode(os.urandom(32)).decode()
    older = base64.b64encode(os.urandom(32)).decode()
    keys = EnvMasterKeys.parse(f"k2:{material}", f"k1:{older}")
    assert keys.current_key_id() == "k2"
    assert keys.key_ids == ["k1", "k2"]
    assert material not in repr(keys)
    short = base64.b64encode(os.urandom(16)).decode()
    for bad, why in [
        (material, "must be <key id>"),
        (f"k1:{short}", "has 16 bytes"),
        ("k1:not base64!!", "not base64"),
        (f"bad id:{material}", "must match"),
    ]:
        with pytest.raises(ConfigurationError, match=why) as raised:
            EnvMasterKeys.parse(bad)
        assert material not in str(raised.value)
        assert short not in str(raised.value)


def test_a_key_file_is_created_private_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "vault.keys"
    keys = FileMasterKeys(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert unseal(keys, ROW, seal(keys, ROW, CANARY)) == CANARY
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        FileMasterKeys(path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        FileMasterKeys(tmp_path / "missing.keys")
    (tmp_path / "garbled.keys").write_text("{not json")
    (tmp_path / "garbled.keys").chmod(0o600)
    with pytest.raises(ConfigurationError, match="not JSON"):
        FileMasterKeys(tmp_path / "garbled.keys")


def test_a_reader_follows_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "vault.keys"
    reader = FileMasterKeys(path, create=True)
    old_id = reader.current_key_id()
    sealed = seal(reader, ROW, CANARY)
    rotator = FileMasterKeys(path)  # as another process would open it
    new_id = rotator.add_key()
    moved = rewrap(rotator, ROW, sealed)
    # The reader has never seen the new key: it re-reads the file when it meets the id.
    assert unseal(reader, ROW, moved) == CANARY
    assert reader.current_key_id() == new_id
    assert rotator.retire(keep=()) == [old_id]
    with pytest.raises(DecryptionFailed):
        unseal(reader, ROW, sealed)


def test_processes_starting_at_once_agree_on_one_key_file(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "vault.keys"
    with ThreadPoolExecutor(8) as pool:
        keyrings = list(pool.map(lambda _: FileMasterKeys(path, create=True), range(16)))
    assert len({k.current_key_id() for k in keyrings}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["vault.keys"]  # no temporary file is left
