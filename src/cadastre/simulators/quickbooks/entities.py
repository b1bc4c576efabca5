"""One QuickBooks company's (realm's) objects and the rules Intuit applies to writing them.

Entities: Account and Customer (name lists: never deleted, only ``Active: false``), Payment and
JournalEntry (transactions: ``operation=delete``). Every object carries ``Id``, ``SyncToken``
("0" on create, one more on every change) and ``MetaData`` (``CreateTime``,
``LastUpdatedTime``, to the second in the company's zone). An update names ``Id`` and the current
``SyncToken`` (else 5010, stale object); ``sparse: true`` changes only the fields sent, a full
update replaces every writable field. Line arrays are replaced wholesale either way, as Intuit
does; a JournalEntry line keeps its ``Id`` when it is sent with it, new lines get the next
number. Deletions are remembered (for CDC) for 30 days.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from cadastre.simulators.quickbooks.faults import (
    QboFault,
    bad_reference,
    business,
    duplicate_name,
    invalid,
    missing,
    not_found,
    qbo_time,
    stale,
    unsupported,
)

# URL path segment -> the entity's JSON name
ENTITIES = {"account": "Account", "customer": "Customer", "payment": "Payment",
            "journalentry": "JournalEntry"}  # fmt: skip
NAME_LISTS = frozenset({"Account", "Customer"})
TRANSACTIONS = frozenset({"Payment", "JournalEntry"})
DELETES_KEPT = timedelta(days=30)
# AccountType -> Classification (the subset a property manager's chart uses)
ACCOUNT_TYPES = {
    "Bank": "Asset", "Other Current Asset": "Asset", "Fixed Asset": "Asset",
    "Other Asset": "Asset", "Accounts Receivable": "Asset", "Equity": "Equity",
    "Expense": "Expense", "Other Expense": "Expense", "Cost of Goods Sold": "Expense",
    "Accounts Payable": "Liability", "Credit Card": "Liability",
    "Long Term Liability": "Liability", "Other Current Liability": "Liability",
    "Income": "Revenue", "Other Income": "Revenue",
}  # fmt: skip
WRITABLE = {
    "Account": {"Name", "AccountType", "AccountSubType", "AcctNum", "Active", "Description",
                "CurrencyRef", "SubAccount", "ParentRef"},
    "Customer": {"DisplayName", "GivenName", "FamilyName", "CompanyName", "PrimaryEmailAddr",
                 "PrimaryPhone", "Active", "Notes", "CurrencyRef"},
    "Payment": {"CustomerRef", "TotalAmt", "TxnDate", "PaymentMethodRef", "DepositToAccountRef",
                "PaymentRefNum", "PrivateNote", "CurrencyRef", "Line"},
    "JournalEntry": {"Line", "TxnDate", "DocNumber", "PrivateNote", "Adjustment", "CurrencyRef"},
}  # fmt: skip
# Sent back by clients that echo what they read; ignored, as Intuit ignores them.
READ_ONLY = {"Id", "SyncToken", "sparse", "domain", "MetaData", "Classification",
             "CurrentBalance", "CurrentBalanceWithSubAccounts", "FullyQualifiedName", "TotalAmt",
             "UnappliedAmt", "Balance", "status"}  # fmt: skip
USD = {"value": "USD", "name": "United States Dollar"}


@dataclass
class Change:
    """What a write did, for CDC and webhooks."""

    entity: str
    id: str
    operation: str  # "Create" | "Update" | "Delete"
    at: datetime


@dataclass
class Company:
    realm: str
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES.values()}
    )
    times: dict[tuple[str, str], datetime] = field(default_factory=dict)  # LastUpdatedTime
    deleted: dict[str, dict[str, datetime]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES.values()}
    )
    next_id: int = 1

    # ---------------------------------------------------------------------------- reads

    def get(self, entity: str, object_id: str) -> dict[str, Any]:
        found = self.objects[entity].get(str(object_id))
        if found is None:
            raise not_found(entity, object_id)
        return found

    def changed_since(self, entity: str, since: datetime) -> list[tuple[datetime, dict[str, Any]]]:
        """Live objects changed at or after ``since`` and deletions since then, oldest first."""
        found = [
            (self.times[(entity, oid)], obj) for oid, obj in self.objects[entity].items()
            if self.times[(entity, oid)] >= since
        ]  # fmt: skip
        for oid, when in self.deleted[entity].items():
            if when >= since:
                stub = {"domain": "QBO", "status": "Deleted", "Id": oid,
                        "MetaData": {"LastUpdatedTime": qbo_time(when)}}  # fmt: skip
                found.append((when, stub))
        found.sort(key=lambda pair: (pair[0], int(pair[1]["Id"])))
        return found

    def forget_old_deletes(self, now: datetime) -> None:
        for entries in self.deleted.values():
            for oid in [k for k, when in entries.items() if now - when > DELETES_KEPT]:
                del entries[oid]

    # ---------------------------------------------------------------------------- writes

    def create(self, entity: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        fields = self._writable(entity, body)
        obj = self._checked(entity, fields, None)
        oid = str(self.next_id)
        self.next_id += 1
        obj.update({"Id": oid, "SyncToken": "0", "domain": "QBO", "sparse": False})
        obj["MetaData"] = {"CreateTime": qbo_time(now), "LastUpdatedTime": qbo_time(now)}
        self._derive(entity, obj, None)
        self.objects[entity][oid] = obj
        self.times[(entity, oid)] = now
        return obj

    def update(
        self, entity: str, body: dict[str, Any], now: datetime, *, check_token: bool = True
    ) -> dict[str, Any]:
        oid = body.get("Id")
        if oid in (None, ""):
            raise missing("Id")
        current = self.get(entity, str(oid))
        if check_token:
            token = body.get("SyncToken")
            if token in (None, ""):
                raise missing("SyncToken")
            if str(token) != current["SyncToken"]:
                raise stale(entity)
        fields = self._writable(entity, body)
        if body.get("sparse") is True:
            merged = {k: v for k, v in current.items() if k in WRITABLE[entity]}
            merged.update(fields)
        else:
            merged = fields
        obj = self._checked(entity, merged, current)
        obj.update({"Id": current["Id"], "domain": "QBO", "sparse": False,
                    "SyncToken": str(int(current["SyncToken"]) + 1)})  # fmt: skip
        obj["MetaData"] = {"CreateTime": current["MetaData"]["CreateTime"],
                           "LastUpdatedTime": qbo_time(now)}  # fmt: skip
        self._derive(entity, obj, current)
        self.objects[entity][current["Id"]] = obj
        self.times[(entity, current["Id"])] = now
        return obj

    def delete(
        self, entity: str, body: dict[str, Any], now: datetime, *, check_token: bool = True
    ) -> dict[str, Any]:
        if entity in NAME_LISTS:
            raise unsupported("Delete")
        oid = body.get("Id")
        if oid in (None, ""):
            raise missing("Id")
        current = self.get(entity, str(oid))
        if check_token:
            token = body.get("SyncToken")
            if token in (None, ""):
                raise missing("SyncToken")
            if str(token) != current["SyncToken"]:
                raise stale(entity)
        del self.objects[entity][current["Id"]]
        del self.times[(entity, current["Id"])]
        self.deleted[entity][current["Id"]] = now
        return {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}

    # ------------------------------------------------------------------------- checking

    def _writable(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        allowed = WRITABLE[entity]
        for name in body:
            if name not in allowed and name not in READ_ONLY:
                raise invalid(name, f"not a field of {entity}")
        return {k: copy.deepcopy(v) for k, v in body.items() if k in allowed}

    def _checked(
        self, entity: str, fields: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any]:
        check = {"Account": self._account, "Customer": self._customer,
                 "Payment": self._payment, "JournalEntry": self._journal}[entity]  # fmt: skip
        check(fields, current)
        if "Active" in fields and not isinstance(fields["Active"], bool):
            raise invalid("Active", "true or false")
        return fields

    def _unique(
        self, entity: str, field_name: str, value: str, current: dict[str, Any] | None
    ) -> None:
        for obj in self.objects[entity].values():
            if obj.get(field_name) == value and (current is None or obj["Id"] != current["Id"]):
                raise duplicate_name(entity)

    def _account(self, fields: dict[str, Any], current: dict[str, Any] | None) -> None:
        name = fields.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise missing("Name")
        if len(name) > 100 or ":" in name:
            raise invalid("Name", "at most 100 characters, no colon")
        kind = fields.get("AccountType")
        if kind is None:
            raise missing("AccountType")
        if kind not in ACCOUNT_TYPES:
            raise invalid("AccountType", f"{kind!r} is not an account type")
        number = fields.get("AcctNum")
        if number is not None and (not isinstance(number, str) or len(number) > 20):
            raise invalid("AcctNum", "a string of at most 20 characters")
        self._unique("Account", "Name", name, current)

    def _customer(self, fields: dict[str, Any], current: dict[str, Any] | None) -> None:
        name = fields.get("DisplayName")
        if not isinstance(name, str) or not name.strip():
            raise missing("DisplayName")
        self._unique("Customer", "DisplayName", name, current)

    def _payment(self, fields: dict[str, Any], current: dict[str, Any] | None) -> None:
        ref = fields.get("CustomerRef")
        if not isinstance(ref, dict) or "value" not in ref:
            raise missing("CustomerRef")
        customer = self.objects["Customer"].get(str(ref["value"]))
        if customer is None or customer.get("Active") is False:
            raise bad_reference("CustomerRef", ref["value"])
        if "TotalAmt" not in fields:
            raise missing("TotalAmt")
        if _amount(fields["TotalAmt"], "TotalAmt") < 0:
            raise invalid("TotalAmt", "not negative")
        deposit = fields.get("DepositToAccountRef")
        if isinstance(deposit, dict) and str(deposit.get("value")) not in self.objects["Account"]:
            raise bad_reference("DepositToAccountRef", deposit.get("value"))
        _date(fields, "TxnDate")

    def _journal(self, fields: dict[str, Any], current: dict[str, Any] | None) -> None:
        lines = fields.get("Line")
        if not isinstance(lines, list) or not lines:
            raise missing("Line")
        sides = {"Debit": Decimal(0), "Credit": Decimal(0)}
        for line in lines:
            if not isinstance(line, dict):
                raise invalid("Line", "a list of objects")
            detail = line.get("JournalEntryLineDetail")
            if line.get("DetailType") != "JournalEntryLineDetail" or not isinstance(detail, dict):
                raise invalid("Line.DetailType", "JournalEntryLineDetail")
            posting = detail.get("PostingType")
            if posting not in sides:
                raise invalid("Line.JournalEntryLineDetail.PostingType", "Debit or Credit")
            account = detail.get("AccountRef")
            if (
                not isinstance(account, dict)
                or str(account.get("value")) not in (self.objects["Account"])
            ):
                raise bad_reference("AccountRef", (account or {}).get("value"))
            amount = _amount(line.get("Amount"), "Line.Amount")
            if amount < 0:
                raise invalid("Line.Amount", "not negative")
            sides[posting] += amount
        if sides["Debit"] != sides["Credit"]:
            raise business("Debits and credits must be equal.")
        _date(fields, "TxnDate")

    def _derive(self, entity: str, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        """The fields QBO computes."""
        obj.setdefault("CurrencyRef", dict(USD))
        if entity == "Account":
            obj.setdefault("Active", True)
            obj["Classification"] = ACCOUNT_TYPES[obj["AccountType"]]
            obj["FullyQualifiedName"] = obj["Name"]
            obj["CurrentBalance"] = current["CurrentBalance"] if current else 0
            obj.setdefault("SubAccount", False)
        elif entity == "Customer":
            obj.setdefault("Active", True)
            obj["Balance"] = current["Balance"] if current else 0
        elif entity == "Payment":
            obj.setdefault("TxnDate", _today(obj))
            obj["UnappliedAmt"] = obj["TotalAmt"]
            obj.setdefault("Line", [])
        elif entity == "JournalEntry":
            kept = {str(line["Id"]) for line in (current or {}).get("Line", []) if "Id" in line}
            used = [int(i) for i in kept if i.isdigit()] + [
                int(line["Id"]) for line in obj["Line"]
                if str(line.get("Id", "")).isdigit() and str(line["Id"]) in kept
            ]  # fmt: skip
            number = max(used, default=-1) + 1
            for line in obj["Line"]:
                if str(line.get("Id", "")) not in kept:
                    line["Id"] = str(number)
                    number += 1
            obj["TotalAmt"] = float(sum(
                _amount(line["Amount"], "Line.Amount") for line in obj["Line"]
                if line["JournalEntryLineDetail"]["PostingType"] == "Debit"
            ))  # fmt: skip
            obj.setdefault("TxnDate", _today(obj))
            obj.setdefault("Adjustment", False)


def _amount(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(name, "a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise invalid(name, "a number") from None
    if not amount.is_finite():
        raise invalid(name, "a number")
    return amount


def _date(fields: dict[str, Any], name: str) -> None:
    value = fields.get(name)
    if value is None:
        return
    try:
        datetime.strptime(str(value), "%Y-%m-%d")  # noqa: DTZ007 - a date, no time of day
    except ValueError:
        raise invalid(name, "a date YYYY-MM-DD") from None


def _today(obj: dict[str, Any]) -> str:
    return str(obj["MetaData"]["LastUpdatedTime"])[:10]


__all__ = ["ENTITIES", "NAME_LISTS", "TRANSACTIONS", "Change", "Company", "QboFault"]
