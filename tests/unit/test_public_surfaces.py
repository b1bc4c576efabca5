"""STYLE.md rule 2: every package has a public surface, and ``__all__`` is exactly it."""

from __future__ import annotations
import __future__

import importlib
from types import ModuleType

import pytest

PACKAGES = [
    "cadastre.observe", "cadastre.vault", "cadastre.directory", "cadastre.testing",
    "cadastre.ownership", "cadastre.sync", "cadastre.mapping", "cadastre.connectors",
    "cadastre.gateway", "cadastre.api", "cadastre.simulators", "cadastre.bus", "cadastre.console",
]  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not isinstance(value, ModuleType | __future__._Feature)
    }
    assert set(module.__all__) == public
    assert len(module.__all__) == len(set(module.__all__))
