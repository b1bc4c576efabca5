"""A test-only connector writing to the loopback vendor of ``vendor.py`` through the gateway:
the RESO connector's settings and mapping (so ``Hub.open_source`` builds it), its vendor mode
read from the last segment of its ``base_url`` (``.../key``, ``.../natural``, ``.../none``).
``install()`` registers it (in a worker process of its own, too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from cadastre.connectors import available
from cadastre.connectors.mls.reso import ResoConnectorSpec
from cadastre.errors import VendorRejected, WriteIndeterminate
from cadastre.gateway import Gateway
from cadastre.ports import Idempotency, OutboundWrite, WriteOperation, WriteReceipt

NAME = "test/http"
FIELDS = frozenset({"Email", "FirstName", "LastName"})


class HttpTarget:
    system = "crm"

    def __init__(self, base_url: str, gateway: Gateway) -> None:
        self._base = base_url
        self._gateway = gateway
        self.mode = Idempotency(base_url.rsplit("/", 1)[1])

    def writable(self) -> Mapping[str, frozenset[str]]:
        return {"Contact": FIELDS}

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        return self.mode

    def streams(self) -> list[str]:
        return []

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        headers = {"X-Write-Key": write.key}
        if self.mode is Idempotency.KEY:
            headers["Idempotency-Key"] = write.key
        body = {"fields": dict(write.fields)}
        if write.operation is WriteOperation.CREATE:
            response = await self._gateway.request("POST", f"{self._base}/objects", json=body,
                                                   headers=headers)  # fmt: skip
        else:
            response = await self._gateway.request(
                "PUT", f"{self._base}/objects/{write.external_id}", json=body, headers=headers
            )
        return _receipt(orjson.loads(response.content))

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        if write.external_id is not None:
            try:
                found = await self._gateway.get_json(f"{self._base}/objects/{write.external_id}")
            except VendorRejected:
                return None
            return _receipt(found)
        email = write.fields.get("Email")
        matches = await self._gateway.get_json(f"{self._base}/objects", params={"Email": email})
        if len(matches) > 1:
            raise WriteIndeterminate(f"{len(matches)} objects have that e-mail")
        return _receipt(matches[0]) if matches else None

    async def aclose(self) -> None:
        await self._gateway.aclose()


def _receipt(body: dict[str, Any]) -> WriteReceipt:
    return WriteReceipt(body["id"], body["version"], None, body["fields"],
                        replayed=bool(body.get("replayed")))  # fmt: skip


class HttpTargetSpec(ResoConnectorSpec):
    name = NAME

    def create(  # type: ignore[override]
        self, settings: BaseModel, *, gateway: Gateway, **kwargs: Any
    ) -> HttpTarget:
        return HttpTarget(settings.base_url, gateway)  # type: ignore[attr-defined]


def install() -> None:
    available()[NAME] = HttpTargetSpec()
