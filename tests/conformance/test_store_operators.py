"""``OperatorsStoreSuite`` (console operators and sessions, issue 9) against every store adapter."""

from __future__ import annotations

import pytest

from cadastre.testing.store_operators_suite import OperatorsStoreSuite
from tests.conformance.adapters import OnFakeStore, OnPostgresStore, OnSqliteStore


class TestFakeStoreOperators(OnFakeStore, OperatorsStoreSuite):
    pass


class TestSqliteStoreOperators(OnSqliteStore, OperatorsStoreSuite):
    pass


@pytest.mark.postgres
class TestPostgresStoreOperators(OnPostgresStore, OperatorsStoreSuite):
    truncate = "operators, operator_sessions, audit_log"
