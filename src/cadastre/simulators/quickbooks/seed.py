"""A small property manager's books, so a simulator has something to sync from the start: a chart
of five accounts, residents as customers, their rent payments and the month's rent charges as
journal entries. Deterministic; every object is stamped ``at`` plus a second per object."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.simulators.quickbooks.entities import Company

CHART = (
    ("Operating Checking", "Bank", "1000"),
    ("Accounts Receivable", "Accounts Receivable", "1200"),
    ("Security Deposits Held", "Other Current Liability", "2100"),
    ("Rental Income", "Income", "4000"),
    ("Repairs and Maintenance", "Expense", "6100"),
)


def seed_company(company: Company, at: datetime, residents: int = 5) -> None:
    tick = iter(range(10_000))

    def when() -> datetime:
        return at + timedelta(seconds=next(tick))

    accounts = [
        company.create("Account", {"Name": n, "AccountType": t, "AcctNum": num}, when())
        for n, t, num in CHART
    ]
    checking, receivable, _, income, _ = (a["Id"] for a in accounts)
    for i in range(1, residents + 1):
        customer = company.create(
            "Customer",
            {"DisplayName": f"Resident {i:03d}", "GivenName": "Resident", "FamilyName": f"{i:03d}",
             "PrimaryEmailAddr": {"Address": f"resident{i:03d}@example.com"}},
            when(),
        )  # fmt: skip
        rent = 1000 + 25 * i
        company.create(
            "JournalEntry",
            {"DocNumber": f"RENT-{i:03d}", "TxnDate": at.date().isoformat(),
             "PrivateNote": f"Rent charge, Resident {i:03d}",
             "Line": [_line(rent, "Debit", receivable, "Rent due"),
                      _line(rent, "Credit", income, "Rent due")]},
            when(),
        )  # fmt: skip
        company.create(
            "Payment",
            {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": rent,
             "TxnDate": at.date().isoformat(), "DepositToAccountRef": {"value": checking},
             "PaymentMethodRef": {"value": "1", "name": "Check"},
             "PaymentRefNum": f"CHK-{i:04d}"},
            when(),
        )  # fmt: skip


def _line(amount: float, posting: str, account: str, description: str) -> dict[str, object]:
    return {
        "Amount": amount,
        "DetailType": "JournalEntryLineDetail",
        "Description": description,
        "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": account}},
    }
