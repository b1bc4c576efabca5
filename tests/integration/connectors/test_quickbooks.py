"""The QuickBooks Online connector against its simulator over real HTTP on loopback, through a
hub on SQLite, on one fake clock: a first sync reads everything by query pages and later ones by
CDC (changes, Active false, deletions, journal entry lines); a rotated refresh token is kept in
the vault and a second hub on the same store refreshes with it; a webhook is read into raw
records and mapped; a write with a stale SyncToken is re-read, re-merged and sent again while the
other side's edit survives; a create whose answer was lost is created once (requestid); ledger
entries are never updated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.connectors.accounting.quickbooks import CONNECTOR
from cadastre.contract import Change, Operation
from cadastre.directory import ConnectionSpec
from cadastre.errors import VendorRejected
from cadastre.ports import InboxStatus, OutboundWrite, Secret, TargetConnector, WriteOperation
from cadastre.simulators import serve
from cadastre.simulators.quickbooks import QuickBooksSimulator
from cadastre.simulators.quickbooks import WebhookSettings as SimWebhookSettings
from cadastre.testing import FakeClock
from cadastre.webhooks.settings import Scheme
from cadastre.webhooks.settings import WebhookSettings as HubWebhookSettings
from cadastre.webhooks.verify import QuickBooks as QuickBooksVerifier
from tests.integration.mls_hub import LOOPBACK, NOW, TENANT

REALM = "9341453050298464"
BOOKS = "books"
VERIFIER = "intuit-verifier-token"


@dataclass
class Books:
    sim: QuickBooksSimulator
    clock: FakeClock
    url: str
    data: Path


@pytest.fixture
async def books(tmp_path: Path) -> AsyncIterator[Books]:
    clock = FakeClock(NOW, autojump=True)
    sim = QuickBooksSimulator(clock=clock)
    async with serve(sim.app) as up:
        yield Books(sim, clock, up.url, tmp_path)
        await sim.webhooks.stop()


@asynccontextmanager
async def hub_on(books: Books, *, first: bool, **config: Any) -> AsyncIterator[Hub]:
    """A hub on the test's SQLite store; ``first`` makes the tenant, the credential (a refresh
    token the simulator granted) and the connection."""
    hub = await bootstrap(
        Settings(data_dir=books.data, gateway_allow_hosts=LOOPBACK),
        clock=books.clock,
        configure_logs=False,
    )
    try:
        if first:
            await hub.tenants.create(TENANT, "Acme")
            granted = books.sim.oauth.grant("qbo-client", REALM)
            await hub.vault.add(
                TENANT,
                "qbo",
                "oauth2_authorization_code",
                {
                    "client_id": "qbo-client",
                    "client_secret": "qbo-secret",
                    "refresh_token": granted["refresh_token"],
                },
                {"refresh_token_reuse": "allowed"},
            )
            await hub.vault.add(TENANT, "qbo-hooks", "webhook_secret", {"secret": VERIFIER})
            await hub.connections.put(
                TENANT,
                ConnectionSpec(
                    name=BOOKS,
                    system="accounting",
                    connector="accounting/quickbooks",
                    credential="qbo",
                    config={
                        "base_url": books.url,
                        "realm_id": REALM,
                        "token_url": f"{books.url}/oauth2/v1/tokens/bearer",
                        "gateway": {"allow_hosts": list(LOOPBACK)},
                        **config,
                    },
                ),
            )
        yield hub
    finally:
        await hub.close()


async def records_of(hub: Hub, entity: str) -> dict[str, Any]:
    """External id -> stored record, for the connection's records of ``entity``."""
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        refs = await uow.xref.for_connection(BOOKS, entity, limit=100_000)
        held = await uow.records.get_many(entity, [r.canonical_id for r in refs])
    by_id = dict(held)
    return {r.external_id: by_id[r.canonical_id] for r in refs if r.canonical_id in by_id}


async def target(hub: Hub) -> TargetConnector:
    connector = (await hub.open_source(TENANT, BOOKS)).connector
    assert isinstance(connector, TargetConnector)
    return connector


def write(
    entity: str,
    operation: WriteOperation,
    fields: dict[str, Any],
    *,
    external_id: str | None = None,
    base: str | None = None,
    key: str = "w-0001",
) -> OutboundWrite:
    return OutboundWrite(
        write_id="write-1",
        key=key,
        entity=entity,
        canonical_id="c-1",
        external_id=external_id,
        operation=operation,
        fields=fields,
        base_version=base,
    )


async def test_sync_reads_everything_then_follows_cdc_into_sqlite(books: Books) -> None:
    async with hub_on(books, first=True) as hub:
        first = await hub.sync(TENANT, BOOKS)
        assert first.tally.quarantined == 0, first.tally.reasons
        accounts = await records_of(hub, "LedgerAccount")
        payments = await records_of(hub, "Payment")
        entries = await records_of(hub, "LedgerEntry")
        assert (len(accounts), len(payments), len(entries)) == (5, 5, 10)
        assert accounts["4"].data["AccountType"] == "Income"  # QBO's Revenue
        assert accounts["4"].data["AccountNumber"] == "4000"
        line = entries["7:0"].data
        assert (line["EntryType"], line["LedgerAccountId"], str(line["Amount"])) == (
            "Debit",
            "2",
            "1025",
        )
        assert payments["8"].data["PaymentMethod"] == "Check"
        assert payments["8"].data["LocalFields"]["CustomerRef.value"] == "6"
        assert set(first.cursors) == {"Account", "Payment", "JournalEntryLine"}
        assert all("changedSince" in c for c in first.cursors.values())
        calls = books.sim.stats.cdc_calls

        books.clock.advance(60)
        sim = books.sim
        sim.ui_edit("Account", "update", {"Name": "Rent Income"}, object_id="4")
        sim.ui_edit("Account", "update", {"Active": False}, object_id="5")
        sim.ui_edit("Payment", "delete", {}, object_id="8")
        sim.ui_edit("JournalEntry", "delete", {}, object_id="7")
        books.clock.advance(60)
        second = await hub.sync(TENANT, BOOKS)
        assert books.sim.stats.cdc_calls == calls + 3  # one CDC read per stream
        accounts = await records_of(hub, "LedgerAccount")
        assert accounts["4"].data["Name"] == "Rent Income"
        assert accounts["5"].data["Active"] is False
        assert not accounts["5"].deleted  # a name list is deactivated, never deleted
        assert (await records_of(hub, "Payment"))["8"].deleted
        entries = await records_of(hub, "LedgerEntry")
        # A journal entry deleted in QBO: its lines are reversed here, never removed.
        assert all("ReversedByEntryId" in entries[k].data for k in ("7:0", "7:1"))
        assert not entries["10:0"].deleted
        assert second.tally.deleted == 1, second.tally  # the payment


async def test_a_full_cdc_answer_splits_the_window_and_an_old_cursor_reads_in_full(
    books: Books,
) -> None:
    async with hub_on(books, first=True, cdc_max=3) as hub:  # the vendor's limit, made small
        await hub.sync(TENANT, BOOKS)
        books.sim.cdc_max = 3
        for n in range(7):
            books.clock.advance(1)
            books.sim.ui_edit("Account", "create", {"Name": f"Unit {n}", "AccountType": "Expense"})
        books.clock.advance(1)
        before = books.sim.stats.cdc_calls
        await hub.sync(TENANT, BOOKS)
        accounts = await records_of(hub, "LedgerAccount")
        assert {f"Unit {n}" for n in range(7)} <= {r.data["Name"] for r in accounts.values()}
        assert books.sim.stats.cdc_calls - before >= 3 + 2  # Account took three answers
        connector = (await hub.open_source(TENANT, BOOKS)).connector
        books.clock.advance(31 * 86400)
        queries = books.sim.stats.queries
        await hub.sync(TENANT, BOOKS)
        assert books.sim.stats.queries > queries  # read in full by query pages
        assert connector.full_reads["Account"] == "cursor older than CDC's look-back"  # type: ignore[attr-defined]


async def test_a_rotated_refresh_token_is_kept_and_the_next_hub_refreshes_with_it(
    books: Books,
) -> None:
    books.sim.oauth.rotate_after = 0  # every refresh answers a new refresh token
    async with hub_on(books, first=True) as hub:
        await hub.sync(TENANT, BOOKS)
    grant = books.sim.oauth._grants[-1]
    assert books.sim.oauth.stats.rotations == 1
    newest = grant.current
    books.clock.advance(3600 + 60)  # the access token has expired
    async with hub_on(books, first=False) as second:
        opened = await second.vault.open(
            TENANT, "qbo", actor="test", purpose="check", fields=("refresh_token",)
        )
        assert opened.field("refresh_token").reveal() == newest
        report = await second.sync(TENANT, BOOKS)
        assert report.tally.quarantined == 0
    assert books.sim.oauth.stats.invalid_grants == 0
    assert books.sim.oauth.stats.rotations == 2


async def test_a_webhook_is_read_back_and_mapped(books: Books) -> None:
    got: list[tuple[bytes, dict[str, str]]] = []

    async def endpoint(request: Request) -> Response:
        got.append((await request.body(), dict(request.headers)))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])
    async with serve(app) as receiver, hub_on(books, first=True) as hub:
        async with httpx.AsyncClient(base_url=books.url) as admin:
            answer = await admin.post(
                "/admin/webhooks", json={"url": f"{receiver.url}/", "verifier_token": VERIFIER}
            )
            assert answer.status_code == 200
        sim = books.sim
        books.clock.advance(5)
        sim.ui_edit("Account", "update", {"AcctNum": "4001"}, object_id="4")
        sim.ui_edit("Payment", "delete", {}, object_id="8")
        sim.ui_edit("Customer", "update", {"GivenName": "R"}, object_id="6")
        await sim.webhooks.drain()
        assert len(got) == 3  # one notification per change
        verifier = QuickBooksVerifier(HubWebhookSettings(scheme=Scheme.QUICKBOOKS, credential="h"))
        for one, headers in got:
            verifier.verify("POST", f"{receiver.url}/", headers, one, [Secret(VERIFIER)])
        # Intuit aggregates events in one array: read the three as one notification.
        body = orjson.dumps([event for one, _ in got for event in orjson.loads(one)])
        source = await hub.open_source(TENANT, BOOKS)
        raw = await source.connector.webhook_records(body, headers)  # type: ignore[attr-defined]
        assert [(r.stream, r.external_id, r.deleted) for r in raw] == [
            ("Account", "4", False),
            ("Payment", "8", True),
        ]  # the Customer is not canonical here
        mapped = [
            source.mappers[r.stream].map(r, tenant=TENANT, connection=BOOKS, system="accounting")
            for r in raw
        ]
        assert isinstance(mapped[0], Change)
        assert mapped[0].fields["AccountNumber"] == "4001"
        assert mapped[0].origin.source_version == "1"
        assert isinstance(mapped[1], Change)
        assert mapped[1].operation is Operation.DELETE
        with pytest.raises(ValueError, match="neither"):
            await source.connector.webhook_records(b'{"nope": 1}', {})  # type: ignore[attr-defined]


async def test_signed_webhooks_go_through_the_hubs_route_and_normaliser_into_the_records(
    books: Books,
) -> None:
    hooks = {"webhook": {"scheme": "quickbooks", "credential": "qbo-hooks"}}
    async with hub_on(books, first=True, **hooks) as hub, serve_app(create_app(hub)) as api:
        await hub.sync(TENANT, BOOKS)  # the journal entries' lines are known from here on
        sim = books.sim
        sim.webhooks.configure(SimWebhookSettings(
            url=f"{api.url}/webhooks/{TENANT}/{BOOKS}", verifier_token=VERIFIER,
            duplicate_rate=1.0,  # Intuit re-emits: every notification arrives twice
        ))  # fmt: skip
        async with hub.webhooks_in.normaliser(hub):
            books.clock.advance(5)
            sim.ui_edit("Account", "update", {"Name": "Rent Income"}, object_id="4")
            sim.ui_edit("Payment", "delete", {}, object_id="8")
            sim.ui_edit("JournalEntry", "delete", {}, object_id="7")
            await sim.webhooks.drain()
            await settled(hub, sim.webhooks.stats.sent)
        stats = sim.webhooks.stats
        # Answered 2xx in time: nothing retried, failed or too slow (Intuit's 3 s).
        assert (stats.sent, stats.retried, stats.failed, stats.too_slow) == (6, 0, 0, 0)
        assert (await records_of(hub, "LedgerAccount"))["4"].data["Name"] == "Rent Income"
        assert (await records_of(hub, "Payment"))["8"].deleted
        entries = await records_of(hub, "LedgerEntry")
        assert all("ReversedByEntryId" in entries[k].data for k in ("7:0", "7:1"))
        assert not entries["10:0"].deleted
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            counts = await uow.webhooks_in.counts()
        assert counts.get((BOOKS, InboxStatus.PROCESSED)) == 6, counts  # none malformed


async def test_an_account_is_never_tombstoned_a_delete_or_merge_of_one_is_read_again(
    books: Books,
) -> None:
    async with hub_on(books, first=True) as hub:
        await hub.sync(TENANT, BOOKS)
        sim = books.sim
        books.clock.advance(60)
        sim.ui_edit("Account", "update", {"Active": False}, object_id="5")
        # Intuit names an account made inactive (or merged away) "Delete"/"Merge", never gone.
        legacy = orjson.dumps({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {
            "entities": [
                {"name": "Account", "id": "5", "operation": "Delete",
                 "lastUpdated": "2026-11-27T01:01:00-08:00"},
                {"name": "Account", "id": "4", "operation": "Merge", "deletedId": "5",
                 "lastUpdated": "2026-11-27T01:01:00-08:00"},
            ]}}]})  # fmt: skip
        source = await hub.open_source(TENANT, BOOKS)
        raw = await source.connector.webhook_records(legacy, {})  # type: ignore[attr-defined]
        assert [(r.external_id, r.deleted) for r in raw] == [("5", False), ("4", False)]
        assert raw[0].data["Active"] is False
        # The same in CDC: a Deleted stub of an account is read again by id.
        sim.companies[REALM].deleted["Account"]["5"] = sim.now()
        books.clock.advance(60)
        report = await hub.sync(TENANT, BOOKS)
        assert report.tally.deleted == 0, report.tally
        accounts = await records_of(hub, "LedgerAccount")
        assert not accounts["5"].deleted
        assert accounts["5"].data["Active"] is False


async def test_a_journal_entry_deleted_after_a_restart_is_quarantined_not_lost(
    books: Books,
) -> None:
    async with hub_on(books, first=True) as hub:
        await hub.sync(TENANT, BOOKS)
    books.clock.advance(60)
    books.sim.ui_edit("JournalEntry", "delete", {}, object_id="7")
    books.clock.advance(60)
    async with hub_on(books, first=False) as restarted:  # its connector never read entry 7
        report = await restarted.sync(TENANT, BOOKS)
        assert report.tally.quarantined == 1, report.tally
        async with restarted.store.unit_of_work(TENANT, read_only=True) as uow:
            held = await uow.quarantine.open_items(BOOKS)
        assert any("JournalEntry 7" in q.reason and "reconcile" in q.reason for q in held)
        entries = await records_of(restarted, "LedgerEntry")
        assert "ReversedByEntryId" not in entries["7:0"].data  # reconcile's job, now visible
        # Intuit's webhook for the same deletion: already reported, not quarantined twice.
        event = orjson.dumps([{"specversion": "1.0", "id": "e-1", "source": "intuit",
                               "type": "qbo.journalentry.deleted.v1", "intuitentityid": "7",
                               "intuitaccountid": REALM, "time": "2026-11-27T01:02:00-08:00",
                               "data": {}}])  # fmt: skip
        source = await restarted.open_source(TENANT, BOOKS)
        assert await source.connector.webhook_records(event, {}) == []  # type: ignore[attr-defined]


async def settled(hub: Hub, sent: int) -> None:
    counts: dict[Any, int] = {}
    for _ in range(1000):
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            counts = {s: n for (c, s), n in (await uow.webhooks_in.counts()).items() if c == BOOKS}
        if not counts.get(InboxStatus.PENDING) and sum(counts.values()) >= sent:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"webhooks not normalised: {counts}")


async def test_a_stale_synctoken_is_reread_remerged_and_sent_again(books: Books) -> None:
    async with hub_on(books, first=True) as hub:
        connector = await target(hub)
        assert CONNECTOR.default_writeback_mode == "shadow"
        books.sim.ui_edit("Account", "update", {"Name": "Rents"}, object_id="4")  # SyncToken 1
        receipt = await connector.write(
            write(
                "LedgerAccount",
                WriteOperation.UPDATE,
                {"AccountNumber": "4050"},
                external_id="4",
                base="0",
            )
        )
        held = books.sim.get("Account", "4")
        assert held is not None
        assert (held["AcctNum"], held["Name"]) == ("4050", "Rents")  # their edit survives
        assert receipt.source_version == held["SyncToken"] == "2"
        assert receipt.values["AccountNumber"] == "4050"
        assert books.sim.stats.stale_refusals == 1
        books.sim.ui_edit("Account", "update", {"Name": "Rents 2"}, object_id="4")
        with pytest.raises(VendorRejected):  # not staleness: an unknown account type is kept
            await connector.write(
                write(
                    "LedgerAccount",
                    WriteOperation.UPDATE,
                    {"AccountType": "Nonsense"},
                    external_id="4",
                    base="3",
                    key="w-0002",
                )
            )


async def test_an_unchanged_classification_keeps_the_accounts_own_type(books: Books) -> None:
    async with hub_on(books, first=True) as hub:
        connector = await target(hub)
        held = books.sim.get("Account", "1")
        assert held is not None
        kind = held["AccountType"]
        assert kind == "Bank"
        fields = {"AccountType": "Asset", "Name": "Operating"}  # the canonical type: Asset
        for base in (None, "0"):  # with the SyncToken known or read first
            update = write("LedgerAccount", WriteOperation.UPDATE, fields, external_id="1",
                           base=base, key=f"acct-{base}")  # fmt: skip
            await connector.write(update)
            held = books.sim.get("Account", "1")
            assert held is not None
            assert (held["AccountType"], held["Name"]) == ("Bank", "Operating"), base


async def test_a_lost_create_answer_never_makes_a_second_payment(books: Books) -> None:
    async with hub_on(books, first=True) as hub:
        connector = await target(hub)
        books.sim.write_faults.append("lost")
        payment = write(
            "Payment",
            WriteOperation.CREATE,
            {
                "Amount": 980.5,
                "PaidAt": "2026-11-27T09:00:00Z",
                "Currency": "USD",
                "LocalFields": {"CustomerRef.value": "6"},
            },
            key="pay-5c1e",
        )
        receipt = await connector.write(payment)  # the gateway resends: the requestid replays
        again = await connector.read_back(payment)  # after a crash: the same requestid again
        assert again is not None
        assert again.replayed
        assert again.external_id == receipt.external_id
        assert books.sim.stats.creates == 1
        assert books.sim.stats.creates_by_requestid == {"pay-5c1e": 1}
        assert books.sim.stats.writes_lost == 1
        assert books.sim.stats.replays >= 2
        removed = await connector.write(
            write(
                "Payment", WriteOperation.DELETE, {}, external_id=receipt.external_id, key="pay-del"
            )
        )
        assert removed.external_id == receipt.external_id
        assert books.sim.get("Payment", receipt.external_id) is None


async def test_ledger_entries_are_never_mutated_only_posted(books: Books) -> None:
    async with hub_on(books, first=True) as hub:
        connector = await target(hub)
        with pytest.raises(VendorRejected, match="reversing entry"):
            await connector.write(
                write(
                    "LedgerEntry", WriteOperation.UPDATE, {"Amount": 1}, external_id="7:0", base="0"
                )
            )
        with pytest.raises(VendorRejected, match="never mutated"):
            await connector.write(
                write("LedgerEntry", WriteOperation.DELETE, {}, external_id="7:0")
            )
        reversal = await connector.write(
            write(
                "LedgerEntry",
                WriteOperation.CREATE,
                {
                    "LedgerAccountId": "2",
                    "EntryType": "Credit",
                    "Amount": 1025,
                    "PostedDate": "2026-11-27",
                    "Memo": "Reverses 7:0",
                    "LocalFields": {"OffsetAccountId": "4"},
                },
                key="rev-7-0",
            )
        )
        entry_id, line = reversal.external_id.split(":")
        posted = books.sim.get("JournalEntry", entry_id)
        assert posted is not None
        assert line == "0"
        assert [x["JournalEntryLineDetail"]["PostingType"] for x in posted["Line"]] == [
            "Credit",
            "Debit",
        ]
        assert books.sim.stats.api_writes == 1  # the refusals never reached QuickBooks
        deactivated = await connector.write(
            write("LedgerAccount", WriteOperation.DELETE, {}, external_id="5", key="acct-off")
        )
        assert deactivated.values["Active"] is False
        await asyncio.sleep(0)
