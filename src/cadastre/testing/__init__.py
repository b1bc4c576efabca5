"""Shipped test support: a fake clock, fakes of every port and conformance suites, so connector and
adapter authors can run the same tests Cadastre runs."""

from cadastre.testing.clock import EPOCH, FakeClock
from cadastre.testing.fakes import FakeStore, FakeUnitOfWork

__all__ = ["EPOCH", "FakeClock", "FakeStore", "FakeUnitOfWork"]
