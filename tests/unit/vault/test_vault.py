"""The vault service on the fake store: writes during a master-key rotation keep the rotation's
work, credentials belong to existing tenants, rows that do not open are reported, not fatal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cadastre.errors import ConfigurationError, NotFound
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.vault import LocalKeyring

TENANT = "acme"


def rotate_to_new_key(kit: VaultKit) -> str:
    """The keyring gains a new current key, the old one still readable."""
    old = kit.keys._keys
    new = {**old, "next-key": AESGCM.generate_key(bit_length=256)}
    kit.keys = LocalKeyring("next-key", new)
    kit.vault.keys = kit.keys
    return "next-key"


async def test_a_write_during_a_rotation_does_not_put_fields_back_under_the_old_key() -> None:
    kit = VaultKit(FakeClock())
    await kit.vault.add(TENANT, "mls", "oauth2_client_credentials",
                        {"client_id": "the-id", "client_secret": "the-secret"})  # fmt: skip
    before = await kit.vault.stored(TENANT, "mls")  # a refresher read the row ...
    new = rotate_to_new_key(kit)
    report = await kit.vault.rotate_master([TENANT], settle=0)  # ... a rotation went by ...
    assert report.rewrapped == 2
    await kit.vault.update(before, secrets={"access_token": "fresh-token"})  # ... it stores
    assert await kit.vault.left_under_old([TENANT], new) == 0
    stored = await kit.vault.stored(TENANT, "mls")
    assert {s.key_id for s in stored.secrets.values()} == {new}
    opened = await kit.vault.open(TENANT, "mls", actor="test", purpose="test")
    assert opened.field("client_secret").reveal() == "the-secret"
    assert opened.field("access_token").reveal() == "fresh-token"


async def test_a_credential_needs_an_existing_tenant() -> None:
    kit = VaultKit(FakeClock())
    with pytest.raises(NotFound, match="tenant 'nosuch' does not exist"):
        await kit.vault.add("nosuch", "mls", "api_key", {"api_key": "k-000000000001"})


async def test_secret_changes_are_validated_against_the_scheme() -> None:
    kit = VaultKit(FakeClock())
    await kit.vault.add(TENANT, "pms", "api_key", {"api_key": "k-000000000001"})
    stored = await kit.vault.stored(TENANT, "pms")
    with pytest.raises(ConfigurationError, match="needs secret field"):
        await kit.vault.update(stored, drop=("api_key",))
    with pytest.raises(ConfigurationError, match="has no field"):
        await kit.vault.update(stored, secrets={"password": "not-for-api-keys"})


async def test_a_row_that_does_not_open_is_reported_and_the_rest_rotate() -> None:
    kit = VaultKit(FakeClock())
    for name in ("a", "b", "c"):
        await kit.vault.add(TENANT, name, "api_key", {"api_key": f"key-of-{name}-0000001"})
    stored = await kit.vault.stored(TENANT, "b")
    broken = replace(stored.secrets["api_key"], key_id="lost-key")  # a key no keyring holds
    async with kit.store.unit_of_work(TENANT) as uow:
        assert await uow.credentials.rewrap("b", broken, was=stored.secrets["api_key"])
        await uow.commit()
    new = rotate_to_new_key(kit)
    report = await kit.vault.rotate_master([TENANT], settle=0)
    assert report.rewrapped == 2
    assert report.failed == ("acme/b/api_key",)
    assert report.left == 1
    assert await kit.vault.left_under_old([TENANT], new) == 1
