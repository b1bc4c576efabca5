"""STYLE.md rule 2 for the simulators: ``__all__`` is exactly the public surface."""

from __future__ import annotations
import __future__

import importlib
from types import ModuleType

import pytest


@pytest.mark.parametrize("name", ["cadastre.simulators", "cadastre.simulators.reso"])
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not isinstance(value, ModuleType | __future__._Feature)
    }
    assert set(module.__all__) == public


def test_the_fake_clock_is_a_simulator_clock() -> None:
    from cadastre.simulators import Clock, SystemClock
    from cadastre.testing import FakeClock

    clocks: list[Clock] = [FakeClock(), SystemClock()]
    assert all(clock.now().tzinfo is not None for clock in clocks)
