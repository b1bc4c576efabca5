"""``cadastre demo``: the main job on the embedded default, end to end over the store.

It plays the part of an MLS feed and the core platform (part 2 replaces the MLS part with a real
RESO Web API simulator and connector), and shows each rule of the sync engine at work.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.contract import ApplyResult, Change, Origin
from cadastre.directory import ConnectionSpec
from cadastre.errors import AlreadyExists, ContractError, OwnershipViolation
from cadastre.sync import BatchItem, CursorAdvance

TENANT = "demo"
MLS = "demo-mls"
PAGE = 100
CITIES = [("Austin", "TX", "787"), ("Round Rock", "TX", "786"), ("Georgetown", "TX", "786"),
          ("Pflugerville", "TX", "786"), ("Cedar Park", "TX", "786")]  # fmt: skip
STREETS = ["Oak", "Pecan", "Live Oak", "Barton Springs", "Congress", "Lamar", "Guadalupe"]
STATUSES = ["Active"] * 6 + ["Pending"] * 2 + ["ActiveUnderContract", "Closed", "ComingSoon"]
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def listing_fields(rng: random.Random, number: int) -> dict[str, Any]:
    city, state, zip_prefix = rng.choice(CITIES)
    street = f"{rng.randint(100, 9999)} {rng.choice(STREETS)} St"
    return {
        "ListingKey": f"L{number:06d}",
        "ListingId": f"ACT{number:07d}",
        "StandardStatus": rng.choice(STATUSES),
        "PropertyType": "Residential",
        "ListPrice": str(Decimal(rng.randrange(180_000, 1_900_000, 500))),
        "UnparsedAddress": f"{street}, {city}, {state}",
        "City": city,
        "StateOrProvince": state,
        "PostalCode": f"{zip_prefix}{rng.randint(0, 99):02d}",
        "BedroomsTotal": rng.randint(1, 6),
        "BathroomsTotalInteger": rng.randint(1, 4),
        "LivingArea": str(Decimal(rng.randrange(650, 5200, 10))),
        "YearBuilt": rng.randint(1925, 2025),
    }


def mls_change(fields: dict[str, Any], at: datetime, version: int) -> Change:
    stamped = {**fields, "ModificationTimestamp": at.isoformat()}
    return Change(
        tenant=TENANT,
        entity="Listing",
        fields=stamped,
        origin=Origin(
            system="mls", connection=MLS, external_id=fields["ListingKey"],
            source_version=str(version), source_time=at,
        ),
    )  # fmt: skip


def property_change(number: int, listing: dict[str, Any], at: datetime) -> Change:
    return Change(
        tenant=TENANT,
        entity="Property",
        fields={
            "PropertyId": f"P{number:06d}",
            "UnparsedAddress": listing["UnparsedAddress"],
            "City": listing["City"],
            "StateOrProvince": listing["StateOrProvince"],
            "PostalCode": listing["PostalCode"],
            "YearBuilt": listing["YearBuilt"],
        },
        origin=Origin(system="core", external_id=f"P{number:06d}", source_time=at),
    )


def display_database_url(url: str) -> str:
    """The database URL as the demo prints it: a SQLite file's path, or any other URL with the
    password left out (``postgresql://app@db:5432/cadastre``)."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1] if "///" in url else url.split("://", 1)[-1]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed URL: show only its scheme
        return url.split("://", 1)[0] + "://..." if "://" in url else "(database URL)"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None:
        host = f"{host}:{port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def demo(
    listings: int = typer.Option(300, min=10, max=100_000, help="listings the MLS sends"),
    seed: int = typer.Option(7, help="seed for the generated data"),
) -> None:
    """Run the main job: sync a generated MLS feed and core property data into the store."""
    outcome = run(lambda hub: _demo(hub, listings, seed))
    if not outcome:
        raise typer.Exit(1)


async def _demo(hub: Hub, count: int, seed: int) -> bool:
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    tally: Counter[str] = Counter()
    database = display_database_url(hub.settings.resolved_database_url())
    console.print(Panel.fit(f"Cadastre demo on the embedded default ({database})"))

    try:
        await hub.tenants.create(TENANT, "Demo brokerage")
    except AlreadyExists:
        console.print(Text.assemble("tenant ", (TENANT, "bold"), " exists; changes already "
                                    "applied come back as idempotent duplicates"))  # fmt: skip
    with contextlib.suppress(AlreadyExists):
        await hub.connections.add(TENANT, ConnectionSpec(
            name=MLS, system="mls", connector="mls/reso", credential="env:DEMO_MLS",
            config={"base_url": "http://127.0.0.1:8081/reso/odata", "page_size": 200},
        ))  # fmt: skip

    generated = [listing_fields(rng, n) for n in range(1, count + 1)]
    originals = list(generated)  # what was first sent, for the re-delivery step
    stamps = [START + timedelta(minutes=n) for n in range(count)]

    async def apply(change: Change, label: str) -> ApplyResult | None:
        (item,) = await hub.engine.apply_batch([change])
        return count_item(item, label)

    def count_item(item: BatchItem, label: str) -> ApplyResult | None:
        result = item.result
        if isinstance(item.error, OwnershipViolation):
            tally[f"{label}: refused (not the owner)"] += 1
            return None
        if isinstance(item.error, ContractError) or result is None:
            tally[f"{label}: rejected (breaks the contract)"] += 1
            return None
        if result.duplicate:
            tally[f"{label}: duplicate (idempotent)"] += 1
        elif result.refused and not result.wrote:
            tally[f"{label}: refused ({result.refused[0].reason.value})"] += 1
        elif result.wrote:
            tally[f"{label}: {'created' if result.created else 'updated'}"] += 1
        else:
            tally[f"{label}: unchanged"] += 1
        return result

    with Progress(
        TextColumn("{task.description:<38}", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        # The initial load goes in pages, as a feed would: one transaction per page, and the
        # page's cursor committed with it.
        task = progress.add_task("MLS initial load (pages of 100)", total=count)
        ids: list[str | None] = []
        for start in range(0, count, PAGE):
            page = [
                mls_change(f, at, 1)
                for f, at in zip(
                    generated[start : start + PAGE], stamps[start : start + PAGE], strict=True
                )
            ]
            last = page[-1].origin
            cursor = CursorAdvance(TENANT, MLS, "Property", {
                "ModificationTimestamp": last.source_time.isoformat() if last.source_time else None,
                "ListingKey": last.external_id,
            })  # fmt: skip
            for item in await hub.engine.apply_batch(page, cursor=cursor):
                result = count_item(item, "MLS listing")
                ids.append(result.canonical_id if result else None)
            progress.advance(task, len(page))

        updates = rng.sample(range(count), k=max(1, count // 5))
        task = progress.add_task("MLS price changes", total=len(updates))
        for i in updates:
            cut = Decimal(generated[i]["ListPrice"]) * Decimal("0.97")
            generated[i] = {**generated[i], "ListPrice": str(cut.quantize(Decimal(1)))}
            await apply(mls_change(generated[i], stamps[i] + timedelta(days=2), 2), "MLS update")
            progress.advance(task)

        task = progress.add_task("MLS late, out-of-order deliveries", total=len(updates))
        for i in updates:
            old = {**generated[i], "ListPrice": "1"}
            await apply(mls_change(old, stamps[i] + timedelta(days=1), 3), "MLS late delivery")
            progress.advance(task)

        properties = max(1, count // 3)
        task = progress.add_task("core platform property records", total=properties)
        for n in range(properties):
            await apply(property_change(n + 1, generated[n], stamps[n]), "core property")
            progress.advance(task)

        crm = min(25, count)
        task = progress.add_task("CRM writing listing prices", total=crm)
        for i in range(crm):
            # the CRM knows the listing by its canonical id, but a price is the MLS's to set
            change = Change(
                tenant=TENANT, entity="Listing", canonical_id=ids[i], fields={"ListPrice": "99000"},
                origin=Origin(system="crm", source_time=stamps[i] + timedelta(days=3)),
            )  # fmt: skip
            await apply(change, "CRM listing price")
            progress.advance(task)

        redeliver = min(50, count)
        task = progress.add_task("MLS re-delivers its first changes", total=redeliver)
        for i in range(redeliver):
            await apply(mls_change(originals[i], stamps[i], 1), "MLS re-delivery")
            progress.advance(task)

    late = stamps[0] + timedelta(days=9)
    bad = mls_change({**generated[0], "StandardStatus": "Sold-ish"}, late, 9)
    try:
        await hub.engine.apply(bad)
        bad_message = Text("accepted (unexpected)", style="red")
    except ContractError as exc:
        bad_message = Text(f"rejected, nothing written: {exc}")

    return await _report(hub, tally, bad_message)


async def _report(hub: Hub, tally: Counter[str], bad_message: Text) -> bool:
    table = Table("what happened", "changes", title="sync engine outcomes")
    for key in sorted(tally):
        table.add_row(key, str(tally[key]))
    console.print(table)

    async with hub.store.unit_of_work(TENANT) as uow:
        counts = {entity: await uow.records.count(entity) for entity in ("Listing", "Property")}
        statuses: Counter[str] = Counter()
        async for record in uow.records.scan("Listing", limit=1_000_000):
            statuses[str(record.data.get("StandardStatus"))] += 1
        pending = len(await uow.outbox.pending(limit=1_000_000))
        cursor = await uow.cursors.get(MLS, "Property")
        report = await uow.audit.verify()

    store_table = Table("in the store", "count")
    for entity, n in counts.items():
        store_table.add_row(f"{entity} records", str(n))
    store_table.add_row("events waiting in the outbox", str(pending))
    store_table.add_row("audit log entries", str(report.entries))
    console.print(store_table)
    if cursor is not None:
        position = ", ".join(f"{k}={v}" for k, v in cursor.value.items())
        console.print(f"{MLS} cursor (committed with its last page): {position}")

    console.print("listings by StandardStatus", style="bold")
    widest = max(statuses.values(), default=1)
    for status, n in statuses.most_common():
        bar = "█" * max(1, round(40 * n / widest))
        console.print(f"  {status:<22} {bar} {n}")

    console.print(Text.assemble("invalid StandardStatus 'Sold-ish': ", bad_message))
    if report.ok:
        console.print(Text.assemble(
            "audit chain: ", ("intact", "green"), f" ({report.entries} entries verified)"
        ))  # fmt: skip
    else:
        console.print(Text.assemble(
            "audit chain: ", (f"broken at {report.first_bad_seq}: {report.problem}", "red")
        ))  # fmt: skip
    return report.ok
