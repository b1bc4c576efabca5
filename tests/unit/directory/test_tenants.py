from __future__ import annotations

import pytest

from cadastre.directory import TenantService
from cadastre.errors import AlreadyExists, ConfigurationError
from cadastre.testing import FakeStore


@pytest.mark.parametrize("bad", ["", "A", "Acme", "a", "acme corp", "-acme", "x" * 64, "ac/me"])
async def test_invalid_ids_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="tenant id"):
        await TenantService(FakeStore()).create(bad)


async def test_create_and_duplicate() -> None:
    service = TenantService(FakeStore())
    tenant = await service.create("acme", "Acme Realty")
    assert (tenant.id, tenant.name) == ("acme", "Acme Realty")
    with pytest.raises(AlreadyExists):
        await service.create("acme")
    assert [t.id for t in await service.all()] == ["acme"]
