"""STYLE.md rule 2: the package's public surface is its ``__all__``, held by this test."""

from __future__ import annotations

from types import ModuleType

import cadastre.contract


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(cadastre.contract).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(cadastre.contract.__all__) == public
    assert cadastre.contract.__all__ == sorted(cadastre.contract.__all__, key=_order)


def _order(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then the rest.
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)
