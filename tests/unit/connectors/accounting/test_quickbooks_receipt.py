"""A QuickBooks Payment write's receipt is what the contract takes (found by the kill trials: a
bare TxnDate as PaidAt made the hub refuse every Payment create's receipt)."""

from __future__ import annotations

from cadastre.connectors.accounting.quickbooks.writes import _receipt
from cadastre.contract import validate_fields


def test_a_payment_receipt_dates_paidat_at_midnight_utc_as_the_read_mapping_does() -> None:
    receipt = _receipt("Payment", {
        "Id": "21", "SyncToken": "0", "TotalAmt": 100, "TxnDate": "2026-11-27",
        "CurrencyRef": {"value": "USD"},
        "MetaData": {"LastUpdatedTime": "2026-11-27T13:37:04-08:00"},
    })  # fmt: skip
    assert receipt.values["PaidAt"] == "2026-11-27T00:00:00Z"
    validate_fields("Payment", dict(receipt.values))  # raises when the hub would refuse it
    assert "PaidAt" not in _receipt("Payment", {"Id": "22", "SyncToken": "0"}).values
