from __future__ import annotations

import pytest

from cadastre.directory import KeyService, TenantService
from cadastre.errors import AuthenticationError, NotFound
from cadastre.ports import ApiKeyScope
from cadastre.testing import FakeClock, FakeStore


@pytest.fixture
async def keys():
    store = FakeStore()
    await TenantService(store).create("acme")
    await TenantService(store).create("globex")
    return store, KeyService(store, FakeClock())


async def test_key_is_shown_once_and_stored_only_as_a_hash(keys) -> None:
    store, service = keys
    issued = await service.create("acme", ApiKeyScope.READ, label="dashboards")
    assert issued.plaintext.startswith(f"cad_{issued.record.key_id}_")
    secret = issued.plaintext.removeprefix(f"cad_{issued.record.key_id}_")
    assert len(secret) == 43  # 256 random bits, url-safe base64
    stored = await store.find_api_key(issued.record.key_id)
    assert stored is not None
    assert len(stored.secret_hash) == 64
    assert secret not in repr(stored)
    assert secret not in repr(await service.all("acme"))


async def test_authenticate_checks_secret_revocation_and_scope(keys) -> None:
    _, service = keys
    read = await service.create("acme", ApiKeyScope.READ)
    write = await service.create("acme", ApiKeyScope.WRITE)
    assert (await service.authenticate(read.plaintext, need=ApiKeyScope.READ)).tenant == "acme"
    assert (await service.authenticate(write.plaintext, need=ApiKeyScope.WRITE)).scope == "write"
    with pytest.raises(AuthenticationError, match="write is required"):
        await service.authenticate(read.plaintext, need=ApiKeyScope.WRITE)
    forged = read.plaintext[:-1] + ("A" if read.plaintext[-1] != "A" else "B")
    with pytest.raises(AuthenticationError, match="invalid or revoked"):
        await service.authenticate(forged, need=ApiKeyScope.READ)
    for garbage in ["", "cad_", "Bearer x", "cad_kzzzzzzzzzzzz_" + "a" * 43]:
        with pytest.raises(AuthenticationError):
            await service.authenticate(garbage, need=ApiKeyScope.READ)
    await service.revoke("acme", read.record.key_id)
    with pytest.raises(AuthenticationError, match="invalid or revoked"):
        await service.authenticate(read.plaintext, need=ApiKeyScope.READ)


async def test_rotate_issues_same_scope_and_revokes_the_old_key(keys) -> None:
    _, service = keys
    old = await service.create("acme", ApiKeyScope.WRITE, label="etl")
    new = await service.rotate("acme", old.record.key_id)
    assert new.record.scope is ApiKeyScope.WRITE
    assert new.record.label == "etl"
    assert new.record.key_id != old.record.key_id
    await service.authenticate(new.plaintext, need=ApiKeyScope.WRITE)
    with pytest.raises(AuthenticationError):
        await service.authenticate(old.plaintext, need=ApiKeyScope.READ)
    with pytest.raises(AuthenticationError, match="revoked"):
        await service.rotate("acme", old.record.key_id)


async def test_tenants_cannot_touch_each_others_keys(keys) -> None:
    _, service = keys
    issued = await service.create("acme", ApiKeyScope.READ)
    assert await service.all("globex") == []
    with pytest.raises(NotFound):
        await service.revoke("globex", issued.record.key_id)
    with pytest.raises(NotFound):
        await service.rotate("globex", issued.record.key_id)
    with pytest.raises(NotFound):
        await service.create("initech", ApiKeyScope.READ)


async def test_key_events_are_in_the_audit_log(keys) -> None:
    store, service = keys
    issued = await service.create("acme", ApiKeyScope.READ)
    await service.revoke("acme", issued.record.key_id)
    async with store.unit_of_work("acme") as uow:
        actions = [e.action async for e in uow.audit.entries()]
        assert (await uow.audit.verify()).ok
    assert actions == ["tenant.created", "key.created", "key.revoked"]


async def test_an_issued_key_does_not_print_its_plaintext(keys) -> None:
    _, service = keys
    issued = await service.create("acme", ApiKeyScope.READ)
    # cad_<key id>_<secret>: the secret is URL-safe base64 and may hold "_" itself
    secret = issued.plaintext.removeprefix(f"cad_{issued.record.key_id}_")
    assert len(secret) >= 40
    assert isinstance(issued.plaintext, str)
    for text in (repr(issued), str(issued), f"{issued}", repr([issued])):
        assert secret not in text
        assert issued.record.key_id in text
