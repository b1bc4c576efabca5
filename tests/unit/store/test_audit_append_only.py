"""The audit log is append-only through the port: neither the SQL repository nor FakeStore's has
a way to change or remove an entry. (Through SQL, triggers refuse UPDATE and DELETE on SQLite and
PostgreSQL: ``tests/conformance/test_store.py::test_audit_log_refuses_update_and_delete``.)"""

from __future__ import annotations

from cadastre.ports import AuditLog
from cadastre.store.repositories.ledger import SqlAudit
from cadastre.testing import FakeStore

APPEND_ONLY = {"append", "append_many", "entries", "entries_for", "verify"}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_the_port_and_its_adapters_only_append_and_read() -> None:
    assert _public(AuditLog) == APPEND_ONLY
    assert _public(SqlAudit) - {"execute", "insert", "now", "own", "wrote"} == APPEND_ONLY
    fake = type(FakeStore().unit_of_work("acme").audit)
    assert _public(fake) == APPEND_ONLY
