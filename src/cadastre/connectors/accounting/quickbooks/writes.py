"""Platform writes to QuickBooks Online (``TargetConnector``), canonical names translated here.

- **UPDATE** is a sparse update (``sparse: true``, ``Id``, ``SyncToken``, our fields only) carrying
  ``base_version`` (read first when unknown). QBO refuses a stale SyncToken (400, fault 5010):
  the object is read again, our fields are laid over the fresh object and the update is sent
  with its SyncToken, at most ``stale_retries`` rounds; the receipt reports the final SyncToken.
  The gateway keeps vendor text out of its errors, so a 400 is known to be the stale fault by
  what it means: the object's SyncToken moved past the one sent (a 400 with the token unmoved is
  some other refusal, raised as it is). Fields the other side changed meanwhile survive: a
  sparse update touches only ours.
- **CREATE** (Payment, LedgerAccount; a LedgerEntry as a two-line JournalEntry, see below) is
  sent with ``?requestid=<write.key>``: QBO answers a repeat with the original answer and no
  second effect, so a resend after a lost answer (the gateway's own retry, or ``read_back``) is
  safe. Every request that carries a requestid also carries an ``Idempotency-Key`` header: it
  tells the gateway's retry layer the POST may be sent again (QBO ignores the header).
  Update rounds use ``<key>-u<n>``, deletes ``<key>-d<n>`` (QBO allows 50 characters).
- **DELETE**: a Payment by ``operation=delete`` (Id + SyncToken, stale handled as above); a
  LedgerAccount cannot be deleted in QBO, so it becomes ``Active: false``.
- **LedgerEntry**: accounting entries are never mutated. An UPDATE or DELETE is refused here
  (``VendorRejected``, terminal): reverse the entry with a new one instead. A CREATE posts a
  JournalEntry of two lines, the entry and its balancing line on the account named by
  ``LocalFields.OffsetAccountId`` (a reversal posts the opposite side of the original entry);
  the receipt's external id is ``<JE Id>:<line Id>`` of the entry's own line.
- A Payment create needs QBO's customer id: ``LocalFields["CustomerRef.value"]`` (where this
  connector's mapping keeps it when reading), since a canonical ResidentId is not QBO's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadastre.connectors.accounting.quickbooks.streams import line_key
from cadastre.errors import ContractError, VendorRejected
from cadastre.mapping.records import parse_time
from cadastre.ports import Idempotency, WriteOperation, WriteReceipt

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from cadastre.connectors.accounting.quickbooks.connector import QuickBooksConnector
    from cadastre.connectors.accounting.quickbooks.settings import QuickBooksSettings
    from cadastre.ports import OutboundWrite

VENDOR_ENTITY = {"LedgerAccount": "Account", "Payment": "Payment", "LedgerEntry": "JournalEntry"}
KEY_FIELD = {"LedgerAccount": "LedgerAccountId", "Payment": "PaymentId",
             "LedgerEntry": "LedgerEntryId"}  # fmt: skip
WRITABLE = {
    "LedgerAccount": frozenset({"Name", "AccountNumber", "Active", "AccountType", "Currency"}),
    "Payment": frozenset({"Amount", "PaidAt", "Currency", "LocalFields"}),
    "LedgerEntry": frozenset(
        {"LedgerAccountId", "EntryType", "Amount", "Currency", "PostedDate", "Memo",
         "LocalFields"}
    ),
}  # fmt: skip
# canonical AccountType -> the QBO AccountType an account of that classification is created as
ACCOUNT_TYPE = {"Asset": "Other Current Asset", "Liability": "Other Current Liability",
                "Equity": "Equity", "Income": "Income", "Expense": "Expense"}  # fmt: skip
CLASSIFICATION = {"Revenue": "Income"}  # QBO's name -> canonical, where they differ
STALE_STATUS = 400
IDEMPOTENCY_HEADER = "Idempotency-Key"


def refused(entity: str, operation: str) -> VendorRejected:
    return VendorRejected(
        f"QuickBooks: a {entity} is never mutated ({operation} refused); post a reversing "
        "entry instead"
    )


class QuickBooksWriter:
    def __init__(self, connector: QuickBooksConnector, settings: QuickBooksSettings) -> None:
        self._connector = connector
        self._settings = settings
        self._sent: set[str] = set()  # requestids this process has sent

    def writable(self) -> Mapping[str, frozenset[str]]:
        return WRITABLE

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency:
        # Every write carries a requestid (creates) or a requestid and a SyncToken (updates,
        # deletes): a resend is answered with the first answer, or refused as stale.
        return Idempotency.KEY

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        entity = _entity(write.entity)
        match write.operation:
            case WriteOperation.CREATE:
                return await self._create(write, entity)
            case WriteOperation.UPDATE:
                if write.entity == "LedgerEntry":
                    raise refused(write.entity, "update")
                return await self._update(write, entity, _vendor_fields(write.entity, write.fields))
            case WriteOperation.DELETE:
                if write.entity == "LedgerEntry":
                    raise refused(write.entity, "delete")
                if entity == "Account":  # a name list: QBO only deactivates
                    return await self._update(write, entity, {"Active": False}, tag="d")
                return await self._delete(write, entity)
        raise ContractError(f"unknown write operation {write.operation!r}")  # pragma: no cover

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        """A create: the same requestid sent again (QBO answers with what it did the first time,
        or does it now if it never got it). Otherwise: the object as QBO holds it; None when it
        is gone."""
        entity = _entity(write.entity)
        if write.operation is WriteOperation.CREATE:
            return await self._create(write, entity)
        object_id = _object_id(write)
        found = await self._connector.fetch(entity, object_id)
        if found is None:
            return None
        return _receipt(write.entity, found, line=_line_of(write))

    # --------------------------------------------------------------------------- sending

    async def _post(
        self, entity: str, body: dict[str, Any], requestid: str, *, delete: bool = False
    ) -> tuple[dict[str, Any], bool]:
        params = {"requestid": requestid}
        if delete:
            params["operation"] = "delete"
        replay = requestid in self._sent
        self._sent.add(requestid)
        sent_at = self._connector_now()
        answer = await self._connector.call(
            "POST", entity.lower(), params=params, json=body,
            headers={IDEMPOTENCY_HEADER: requestid},
        )  # fmt: skip
        found = answer.get(entity)
        if not isinstance(found, dict):
            raise VendorRejected(f"QuickBooks POST {entity.lower()}: no {entity} in the answer")
        answered = parse_time(answer.get("time"))
        # An answer stamped well before the request was made is the stored one of an earlier
        # request with this requestid.
        if answered is not None and (sent_at - answered).total_seconds() >= 1:
            replay = True
        return found, replay

    def _connector_now(self) -> datetime:
        return self._connector._clock.now()

    async def _create(self, write: OutboundWrite, entity: str) -> WriteReceipt:
        if write.entity == "LedgerEntry":
            body = _journal_entry(write.fields)
        else:
            body = _vendor_fields(write.entity, write.fields)
            if write.entity == "Payment":
                body["CustomerRef"] = {"value": _customer(write.fields)}
        found, replayed = await self._post(entity, body, write.key)
        line = "0" if write.entity == "LedgerEntry" else None
        return _receipt(write.entity, found, replayed=replayed, line=line)

    async def _update(
        self, write: OutboundWrite, entity: str, fields: dict[str, Any], *, tag: str = "u"
    ) -> WriteReceipt:
        object_id = _object_id(write)
        token = write.base_version
        if token is None or "AccountType" in fields:
            # An account's own type (Bank...) is kept unless its classification changes: that
            # needs the object as held, even when the SyncToken is known.
            current = await self._require(entity, object_id)
            token = str(current["SyncToken"]) if token is None else token
            fields = _without_unchanged_type(fields, current)
        rounds = self._settings.stale_retries
        for attempt in range(rounds + 1):
            body = {**fields, "Id": object_id, "SyncToken": token, "sparse": True}
            try:
                found, replayed = await self._post(entity, body, f"{write.key}-{tag}{attempt}")
            except VendorRejected as exc:
                token = await self._fresh_token(exc, entity, object_id, token)
                continue
            return _receipt(write.entity, found, replayed=replayed)
        raise VendorRejected(
            f"QuickBooks {entity} {object_id}: still a stale SyncToken after {rounds} re-reads",
            STALE_STATUS,
        )

    async def _delete(self, write: OutboundWrite, entity: str) -> WriteReceipt:
        object_id = _object_id(write)
        token = write.base_version
        if token is None:
            token = str((await self._require(entity, object_id))["SyncToken"])
        rounds = self._settings.stale_retries
        for attempt in range(rounds + 1):
            body = {"Id": object_id, "SyncToken": token}
            try:
                await self._post(entity, body, f"{write.key}-d{attempt}", delete=True)
            except VendorRejected as exc:
                token = await self._fresh_token(exc, entity, object_id, token)
                continue
            return WriteReceipt(external_id=object_id, source_version=None,
                                source_time=self._connector_now(), values={})  # fmt: skip
        raise VendorRejected(
            f"QuickBooks {entity} {object_id}: still a stale SyncToken after {rounds} re-reads",
            STALE_STATUS,
        )

    async def _fresh_token(
        self, exc: VendorRejected, entity: str, object_id: str, sent: str
    ) -> str:
        """After a 400: the object's new SyncToken when ours was stale; else the 400 stands."""
        if exc.status != STALE_STATUS:
            raise exc
        fresh = await self._connector.fetch(entity, object_id)
        if fresh is None or str(fresh.get("SyncToken")) == sent:
            raise exc
        return str(fresh["SyncToken"])

    async def _require(self, entity: str, object_id: str) -> dict[str, Any]:
        found = await self._connector.fetch(entity, object_id)
        if found is None:
            raise VendorRejected(f"QuickBooks {entity} {object_id}: not found", 404)
        return found


# ------------------------------------------------------------------------------ translation


def _entity(canonical: str) -> str:
    try:
        return VENDOR_ENTITY[canonical]
    except KeyError:
        raise ContractError(f"QuickBooks takes no writes of {canonical}") from None


def _object_id(write: OutboundWrite) -> str:
    if not write.external_id:
        raise ContractError(f"a {write.operation.value} of {write.entity} needs its QuickBooks id")
    return write.external_id.split(":", 1)[0]  # a LedgerEntry's id is "<JE Id>:<line>"


def _line_of(write: OutboundWrite) -> str | None:
    if write.entity == "LedgerEntry" and write.external_id and ":" in write.external_id:
        return write.external_id.split(":", 1)[1]
    return None


def _vendor_fields(entity: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - WRITABLE.get(entity, frozenset()))
    if unknown:
        raise ContractError(f"QuickBooks cannot write {entity} field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        match (entity, name):
            case ("LedgerAccount", "Name") | ("LedgerAccount", "Active"):
                out[name] = value
            case ("LedgerAccount", "AccountNumber"):
                out["AcctNum"] = value
            case ("LedgerAccount", "AccountType"):
                out["AccountType"] = ACCOUNT_TYPE.get(str(value), value)
            case (_, "Currency"):
                out["CurrencyRef"] = {"value": value}
            case ("Payment", "Amount"):
                out["TotalAmt"] = float(value) if isinstance(value, str) else value
            case ("Payment", "PaidAt"):
                out["TxnDate"] = str(value)[:10]
            case _:
                pass  # LocalFields: read where needed
    return out


def _without_unchanged_type(fields: dict[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """An account keeps its own AccountType (Bank, Accounts Receivable...) while its canonical
    classification is unchanged: the canonical type names only the classification."""
    kind = fields.get("AccountType")
    if kind is None:
        return fields
    held = CLASSIFICATION.get(str(current.get("Classification")), current.get("Classification"))
    wanted = next((c for c, t in ACCOUNT_TYPE.items() if t == kind), None)
    if held == wanted:
        return {k: v for k, v in fields.items() if k != "AccountType"}
    return fields


def _customer(fields: Mapping[str, Any]) -> str:
    local = fields.get("LocalFields")
    customer = local.get("CustomerRef.value") if isinstance(local, dict) else None
    if not customer:
        raise ContractError(
            "a QuickBooks Payment needs its customer: LocalFields['CustomerRef.value']"
        )
    return str(customer)


def _journal_entry(fields: Mapping[str, Any]) -> dict[str, Any]:
    local = fields.get("LocalFields") if isinstance(fields.get("LocalFields"), dict) else {}
    offset = local.get("OffsetAccountId") if isinstance(local, dict) else None
    side, account = fields.get("EntryType"), fields.get("LedgerAccountId")
    if side not in ("Debit", "Credit") or not account or not offset:
        raise ContractError(
            "a LedgerEntry is posted as a JournalEntry: it needs EntryType, LedgerAccountId, "
            "Amount and LocalFields.OffsetAccountId (the balancing account)"
        )
    amount = fields.get("Amount")
    amount = float(amount) if isinstance(amount, str) else amount
    other = "Credit" if side == "Debit" else "Debit"
    memo = fields.get("Memo")

    def line(posting: str, account_id: Any) -> dict[str, Any]:
        detail = {"PostingType": posting, "AccountRef": {"value": str(account_id)}}
        entry = {"Amount": amount, "DetailType": "JournalEntryLineDetail",
                 "JournalEntryLineDetail": detail}  # fmt: skip
        if memo:
            entry["Description"] = memo
        return entry

    body: dict[str, Any] = {"Line": [line(str(side), account), line(other, offset)]}
    if fields.get("PostedDate"):
        body["TxnDate"] = str(fields["PostedDate"])[:10]
    if fields.get("Currency"):
        body["CurrencyRef"] = {"value": fields["Currency"]}
    return body


def _paid_at(txn_date: Any) -> str | None:
    """QBO's TxnDate (a date) as the canonical PaidAt, that day's midnight UTC, as the read
    mapping (``payment.yaml``) makes it: a receipt the contract refuses is never applied."""
    return f"{str(txn_date)[:10]}T00:00:00Z" if txn_date else None


def _receipt(
    entity: str, found: Mapping[str, Any], *, replayed: bool = False, line: str | None = None
) -> WriteReceipt:
    meta = found.get("MetaData") if isinstance(found.get("MetaData"), dict) else {}
    when = parse_time(meta.get("LastUpdatedTime")) if isinstance(meta, dict) else None
    object_id = str(found.get("Id"))
    values: dict[str, Any]
    if entity == "LedgerAccount":
        values = {"LedgerAccountId": object_id, "Name": found.get("Name"),
                  "AccountNumber": found.get("AcctNum"), "Active": found.get("Active"),
                  "AccountType": CLASSIFICATION.get(str(found.get("Classification")),
                                                    found.get("Classification"))}  # fmt: skip
    elif entity == "Payment":
        values = {"PaymentId": object_id, "Amount": found.get("TotalAmt"),
                  "Currency": (found.get("CurrencyRef") or {}).get("value"),
                  "PaidAt": _paid_at(found.get("TxnDate"))}  # fmt: skip
    else:
        lines = [x for x in found.get("Line") or [] if isinstance(x, dict)]
        chosen = next((x for x in lines if str(x.get("Id")) == line), lines[0] if lines else {})
        detail = chosen.get("JournalEntryLineDetail") or {}
        line = str(chosen.get("Id", line or "0"))
        values = {"LedgerEntryId": line_key(object_id, line), "Amount": chosen.get("Amount"),
                  "EntryType": detail.get("PostingType"),
                  "LedgerAccountId": (detail.get("AccountRef") or {}).get("value"),
                  "PostedDate": found.get("TxnDate"),
                  "Memo": chosen.get("Description")}  # fmt: skip
        object_id = line_key(object_id, line)
    return WriteReceipt(
        external_id=object_id, source_version=str(found.get("SyncToken")), source_time=when,
        values={k: v for k, v in values.items() if v is not None}, replayed=replayed,
    )  # fmt: skip
