"""Test-only connectors that take writes (``TargetConnector``) until the vendor packages land:
the RESO connector's settings and mapping (so ``Hub.open_source`` builds them like any other),
with a ``FakeTargetConnector`` behind each connection, found in ``VENDORS`` by the connection's
``base_url``. ``test/target`` starts live; ``test/ledger`` starts in shadow, as accounting does.

Register with ``register(monkeypatch)`` before the hub opens a connection."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from cadastre.connectors import available
from cadastre.connectors.mls.reso import ResoConnectorSpec
from cadastre.testing.fake_target import FakeTargetConnector

VENDORS: dict[str, FakeTargetConnector] = {}


class TargetSpec(ResoConnectorSpec):
    name = "test/target"
    default_writeback_mode: ClassVar[str] = "live"

    def create(self, settings: BaseModel, **kwargs: Any) -> FakeTargetConnector:  # type: ignore[override]
        return VENDORS[settings.base_url]  # type: ignore[attr-defined]


class LedgerSpec(TargetSpec):
    name = "test/ledger"
    default_writeback_mode: ClassVar[str] = "shadow"


SPECS = [TargetSpec(), LedgerSpec()]


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    VENDORS.clear()
    for spec in SPECS:
        monkeypatch.setitem(available(), spec.name, spec)


def config(vendor: str, **more: Any) -> dict[str, Any]:
    return {"base_url": f"https://{vendor}.invalid/odata", "mapping": "mls/reso", **more}


def vendor(name: str, target: FakeTargetConnector) -> FakeTargetConnector:
    VENDORS[f"https://{name}.invalid/odata"] = target
    return target
