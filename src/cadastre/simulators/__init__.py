"""Vendor simulators: faithful stand-ins for the systems Cadastre talks to, with fault profiles, a
vendor-side rate limit that counts violations, and a clock the tests can share with the hub.

They import nothing of Cadastre (an import-linter contract holds that): a simulator is a vendor.
Run one in-process with ``serve(sim.app)`` or as a process with
``python -m cadastre.simulators reso --port 0``. See README.md beside this file.
"""

from cadastre.simulators.base import SimStats, Simulator
from cadastre.simulators.clock import Clock, SystemClock
from cadastre.simulators.faults import (
    FaultKind,
    FaultProfile,
    InjectedLostResponse,
    InjectedReset,
)
from cadastre.simulators.ratelimit import RateLimit
from cadastre.simulators.reso import ResoSimulator, ResoStats
from cadastre.simulators.server import RunningServer, serve, spawn

__all__ = [
    "Clock",
    "FaultKind",
    "FaultProfile",
    "InjectedLostResponse",
    "InjectedReset",
    "RateLimit",
    "ResoSimulator",
    "ResoStats",
    "RunningServer",
    "SimStats",
    "Simulator",
    "SystemClock",
    "serve",
    "spawn",
]
