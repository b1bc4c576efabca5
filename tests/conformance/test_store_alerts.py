"""``AlertsStoreSuite`` (alerts and ``outbox.recent``, issue 9) against every store adapter."""

from __future__ import annotations

import pytest

from cadastre.testing.store_alerts_suite import AlertsStoreSuite
from tests.conformance.adapters import OnFakeStore, OnPostgresStore, OnSqliteStore


class TestFakeStoreAlerts(OnFakeStore, AlertsStoreSuite):
    pass


class TestSqliteStoreAlerts(OnSqliteStore, AlertsStoreSuite):
    pass


@pytest.mark.postgres
class TestPostgresStoreAlerts(OnPostgresStore, AlertsStoreSuite):
    truncate = "alerts, outbox RESTART IDENTITY"
