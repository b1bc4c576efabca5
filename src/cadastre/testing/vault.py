"""A vault for tests and connector authors: the real ``Vault`` and ``TokenManager`` over a
``FakeStore``, a random in-memory master key and in-process locks.

    kit = VaultKit(clock)
    auth = await kit.client_credentials("acme", "mls", "demo-client", "demo-secret",
                                        token_url=f"{url}/oauth/token")
    gateway = Gateway(base_url, policy, clock=clock, auth=auth, ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cadastre.gateway import VaultAuth
from cadastre.ports import Tenant
from cadastre.testing.fakes import FakeStore
from cadastre.vault import Defaults, LocalKeyring, MemoryLockBackend, TokenManager, Vault

if TYPE_CHECKING:
    from cadastre.ports import Clock, LockBackend, Store


class VaultKit:
    def __init__(
        self, clock: Clock, *, store: Store | None = None, locks: LockBackend | None = None,
        tenants: tuple[str, ...] = ("acme",), **tokens: Any,
    ) -> None:  # fmt: skip
        """A ``FakeStore`` (unless ``store`` is given) holding ``tenants``: the vault refuses
        credentials of a tenant that does not exist; ``add`` creates its tenant itself."""
        self.clock = clock
        if store is None:
            store = FakeStore(clock)
            for tenant in tenants:  # a fresh fake, so no await is needed to fill it
                store._state.tenants[tenant] = Tenant(tenant, tenant, clock.now())
        self.store = store
        self.keys = LocalKeyring("test-key", {"test-key": AESGCM.generate_key(bit_length=256)})
        self.vault = Vault(self.store, self.keys, clock)
        self.tokens = TokenManager(self.vault, locks or MemoryLockBackend(), clock, **tokens)

    async def add(
        self, tenant: str, name: str, scheme: str, secrets: dict[str, str], **meta: Any
    ) -> VaultAuth:
        if await self.store.get_tenant(tenant) is None:
            await self.store.create_tenant(tenant, tenant)
        stored = await self.vault.add(tenant, name, scheme, secrets, meta)
        return VaultAuth(self.tokens, tenant, name, stored.scheme, dict(stored.meta),
                         actor=f"connection:{name}")  # fmt: skip

    async def client_credentials(
        self, tenant: str, name: str, client_id: str, client_secret: str, *,
        token_url: str | None = None, scope: str | None = None, **meta: Any,
    ) -> VaultAuth:  # fmt: skip
        auth = await self.add(
            tenant, name, "oauth2_client_credentials",
            {"client_id": client_id, "client_secret": client_secret}, **meta,
        )  # fmt: skip
        return VaultAuth(auth.tokens, tenant, name, auth.scheme, auth.meta,
                         Defaults(token_url, scope), auth.actor)  # fmt: skip
