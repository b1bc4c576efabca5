"""Conservation under random corruption: every record a vendor sends ends up in the store (as its
key's newest version) or in quarantine (with a reason and a code; copies of one payload are one
open entry, seen as often as they were sent) - none lost, none counted twice.

Hypothesis draws a feed of listing versions over a few keys, at random times (so later pages go
back in time, and one page can hold a key twice, older or newer), and corrupts some: the key
dropped, a price that is not a number, an unknown status, an item that is not a record, an exact
copy, a whole page served as malformed JSON once. The feed goes through ``SyncRunner`` over a
FakeStore, run after run until no page is left unread, and the outcome is checked against a small
model of the rules (``expected``), written from docs/sync.md rather than from the code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadastre.contract.registry import LOCAL_FIELDS
from cadastre.mapping import MappingRegistry
from cadastre.ownership import load_registry
from cadastre.ports import RawPage
from cadastre.sync import REFUSED_EVENT, SyncEngine, SyncRunner
from cadastre.testing import FakeClock, FakeStore

from .conftest import FAMILY, TENANT
from .test_tolerance import item, raw

KEYS = 3
KINDS = ("ok", "ok", "ok", "ok", "no_key", "bad_type", "bad_enum", "junk", "copy")
MAPPING = "mapping: t\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"


@dataclass(frozen=True)
class Sent:
    tag: str  # unique per drawn record; an exact copy shares its original's
    key: int
    minute: int
    kind: str
    data: Any  # what the vendor sends: a record, or not

    @property
    def mapped(self) -> bool:  # becomes a change (a bad price fails only when applied)
        return self.kind in ("ok", "bad_type")


def feed(drawn: list[tuple[int, int, str]]) -> list[Sent]:
    out: list[Sent] = []
    for i, (key, minute, kind) in enumerate(drawn):
        if kind == "copy":
            if out:
                out.append(out[-1])
            continue
        tag = f"r{i}"
        data: Any = item(key, minute, ACT_Tag=tag)
        if kind == "no_key":
            del data["ListingKey"]
        elif kind == "bad_type":
            data["ListPrice"] = "N/A"
        elif kind == "bad_enum":
            data["StandardStatus"] = f"Weird {i}"
        elif kind == "junk":
            data = tag  # a bare string where a record should be
        out.append(Sent(tag, key, minute, kind, data))
    return out


class Feed:
    """Pages of ``sent``; the pages in ``malformed`` are unreadable the first time they are
    read, and fine after (the vendor's glitch passed)."""

    system = "mls"

    def __init__(self, pages: list[list[Sent]], malformed: set[int]) -> None:
        self.pages = pages
        self.malformed = set(malformed)

    def streams(self) -> Sequence[str]:
        return ["Property"]

    async def aclose(self) -> None:
        return None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        start = int(cursor["page"]) if cursor else 0
        for index in range(start, len(self.pages)):
            if index in self.malformed:
                self.malformed.discard(index)
                body = f'{{"value": [{{"page": {index}'
                yield RawPage(stream, [], dict(cursor or {}), problem="not JSON", raw=body)
                return
            records = [raw(stream, s.data) for s in self.pages[index]]
            yield RawPage(stream, records, {"page": index + 1})


def expected(pages: list[list[Sent]]) -> tuple[dict[int, str], Counter[str], int]:
    """The rules as documented: (key -> tag of the stored version, quarantined tags, duplicates).

    Per page: records that do not map are set aside; of the rest, one version per key is kept
    (the newest by time, a tie to the later; exact copies of the kept one stay). Then, in order:
    a change already applied is a duplicate; one older than the stored version is set aside
    (timestamp_backwards); a bad price is set aside (invalid_value); the rest is stored."""
    stored: dict[int, tuple[int, str]] = {}
    applied: set[str] = set()
    quarantined: Counter[str] = Counter()
    duplicates = 0
    for page in pages:
        kept: dict[int, list[Sent]] = {}
        order: list[int] = []
        for sent in page:
            if not sent.mapped:
                quarantined[sent.tag] += 1
                continue
            group = kept.get(sent.key)
            if group is None:
                kept[sent.key] = [sent]
                order.append(sent.key)
            elif sent.tag == group[0].tag:
                group.append(sent)
            elif sent.minute >= group[0].minute:
                quarantined.update(s.tag for s in group)
                kept[sent.key] = [sent]
            else:
                quarantined[sent.tag] += 1
        for key in order:
            for sent in kept[key]:
                if sent.tag in applied:
                    duplicates += 1
                elif (key in stored and sent.minute < stored[key][0]) or sent.kind == "bad_type":
                    quarantined[sent.tag] += 1
                else:
                    stored[key] = (sent.minute, sent.tag)
                    applied.add(sent.tag)
    return {key: tag for key, (_, tag) in stored.items()}, quarantined, duplicates


async def ingest(pages: list[list[Sent]], malformed: set[int], tmp: Path) -> dict[str, Any]:
    clock = FakeClock(autojump=True)
    store = FakeStore(clock)
    engine = SyncEngine(store, load_registry(None), clock)
    (tmp / "t.yaml").write_text(MAPPING)
    mapper = MappingRegistry(tmp, {"mls/reso": FAMILY}).load("t")
    runner = SyncRunner(engine, store, clock)
    connector = Feed(pages, malformed)
    tally: Counter[str] = Counter()
    for _ in range(len(malformed) + 1):
        report = await runner.run(tenant=TENANT, connection="mls1", connector=connector,
                                  mappers={"Property": mapper})  # fmt: skip
        t = report.tally
        tally.update(fetched=t.fetched, stored=t.stored, quarantined=t.quarantined,
                     duplicates=t.duplicates, unread=t.unreadable_pages)  # fmt: skip
        if not report.unread:
            break
    async with store.unit_of_work(TENANT) as uow:
        entries = await uow.quarantine.open_items("mls1")
        events = [m.event for m in await uow.outbox.pending(limit=10_000)]
        applied = Counter(
            e.data["fields"][LOCAL_FIELDS]["ACT_Tag"] for e in events if e.type != REFUSED_EVENT
        )
        records: dict[int, Any] = {}
        for key in range(KEYS):
            canonical = await uow.xref.resolve("mls", "mls1", "Listing", f"L{key:04d}")
            record = canonical and await uow.records.get("Listing", canonical)
            if record:
                records[key] = record
    return {"tally": tally, "entries": entries, "records": records, "applied": applied,
            "left": connector.malformed}  # fmt: skip


drawn_feed = st.lists(
    st.tuples(st.integers(0, KEYS - 1), st.integers(0, 12), st.sampled_from(KINDS)),
    min_size=1,
    max_size=24,
)


def test_every_record_is_stored_or_quarantined_once(full_trials: bool, tmp_path: Path) -> None:
    @settings(
        max_examples=500 if full_trials else 40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(drawn=drawn_feed, data=st.data())
    def check(drawn: list[tuple[int, int, str]], data: st.DataObject) -> None:
        sent = feed(drawn)
        sizes = data.draw(st.lists(st.integers(1, 5), min_size=len(sent), max_size=len(sent)))
        pages: list[list[Sent]] = []
        rest = list(sent)
        for size in sizes:
            if not rest:
                break
            pages.append(rest[:size])
            rest = rest[size:]
        bad = st.sets(st.integers(0, len(pages) - 1), max_size=2) if pages else st.just(set())
        malformed = data.draw(bad, label="malformed pages")
        outcome = asyncio.run(ingest(pages, malformed, tmp_path))
        want_stored, want_quarantined, want_duplicates = expected(pages)

        tally = outcome["tally"]
        assert tally["fetched"] == len(sent)  # each page read once, after any glitch
        assert tally["fetched"] == tally["stored"] + tally["quarantined"]
        assert tally["duplicates"] == want_duplicates
        assert tally["unread"] == len(malformed)
        assert outcome["left"] == set()

        entries = outcome["entries"]
        pages_set_aside = [q for q in entries if q.code == "malformed_page"]
        assert len(pages_set_aside) == len(malformed)
        records = [q for q in entries if q.code != "malformed_page"]
        assert all(q.reason and q.code and q.stream == "Property" for q in records)
        # One open entry per payload: a copy set aside again is a sighting of its entry.
        payloads = [orjson.dumps(q.payload, option=orjson.OPT_SORT_KEYS) for q in records]
        assert len(set(payloads)) == len(payloads)
        tags: Counter[Any] = Counter()
        for q in records:  # a junk item is kept as {"value": <the item>}
            tags[q.payload.get("ACT_Tag", q.payload.get("value"))] += q.sightings
        assert tags == want_quarantined
        assert tags.total() == tally["quarantined"]  # none counted twice

        stored = {key: r.data[LOCAL_FIELDS]["ACT_Tag"] for key, r in outcome["records"].items()}
        assert stored == want_stored
        # Conservation, as the store shows it: each record sent was applied (its event is in
        # the outbox), was a duplicate of one applied, or is in quarantine - exactly once.
        applied = outcome["applied"]
        assert set(applied.values()) <= {1}
        assert applied.total() + tally["duplicates"] + tags.total() == len(sent)

    check()


def test_a_known_feed(tmp_path: Path) -> None:
    # L0: 5, then 3 (backwards) on the next page; L1 twice in a page (4 wins over 2); junk.
    sent = feed([(0, 5, "ok"), (1, 2, "ok"), (1, 4, "ok"), (2, 1, "junk"), (0, 3, "ok")])
    pages = [sent[:4], sent[4:]]
    outcome = asyncio.run(ingest(pages, {1}, tmp_path))
    assert expected(pages) == ({0: "r0", 1: "r2"}, Counter({"r1": 1, "r3": 1, "r4": 1}), 0)
    codes = sorted(q.code for q in outcome["entries"])
    assert codes == ["duplicate_in_page", "malformed_page", "timestamp_backwards", "unreadable"]
