"""The floor under ``bench/ingest.py``'s ratio: what the same durable work per record costs when
written by hand, with no framework at all, next to what the baseline does per record.

For each simulated listing (the RESO simulator's records, generated in-process, no HTTP) the
hand-written pipeline does what ``SyncEngine.apply_batch`` must: map the vendor record, build the
change and its idempotency key, validate every field against the contract, then write the record
with its content hash, its provenance, its cross-reference, a CloudEvent in the outbox, a
hash-chained audit entry and the idempotency-ledger row, all in one SQLite transaction with
``executemany``. The baseline's work is parsing the page and ``executemany`` of each record's JSON.

If the floor is several times the baseline, no tuning of the engine reaches a ratio above
baseline/floor: the target needs less work per record, not faster code.

    .venv/bin/python bench/ingest_floor.py [--records 5000]
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from cadastre.connectors.mls.reso import CONNECTOR
from cadastre.contract import Change, validate_fields
from cadastre.mapping import MappingRegistry
from cadastre.mapping.records import parse_time
from cadastre.ports import RawRecord
from cadastre.simulators import ResoSimulator

# table -> (columns, how many leading columns are its unique key), as in the real schema
TABLES = {
    "records": (8, 3), "provenance": (4, 3), "xref": (6, 5), "outbox": (4, 1), "audit": (10, 2),
    "applied": (3, 2), "raw": (3, 1),
}  # fmt: skip


def database(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for name, (columns, key) in TABLES.items():
        db.execute(f"CREATE TABLE {name} ({', '.join(f'c{i}' for i in range(columns))})")
        db.execute(
            f"CREATE UNIQUE INDEX ix_{name} ON {name} ({', '.join(f'c{i}' for i in range(key))})"
        )
    return db


def insert(db: sqlite3.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    for name, batch in rows.items():
        marks = ", ".join("?" * TABLES[name][0])
        db.executemany(f"INSERT INTO {name} VALUES ({marks})", batch)  # noqa: S608 - our names
    db.execute("COMMIT")


def floor(page: bytes, db: sqlite3.Connection) -> dict[str, float]:
    registry = MappingRegistry(Path("mappings"), {"mls/reso": CONNECTOR.family_mapping})
    mapper = registry.load("mls/reso")
    spent = dict.fromkeys(("parse", "map", "validate", "build", "sqlite"), 0.0)
    started = time.perf_counter()
    items = orjson.loads(page)["value"]
    spent["parse"] = time.perf_counter() - started
    started = time.perf_counter()
    changes = []
    for item in items:
        stamp = item.get("ModificationTimestamp")
        raw = RawRecord("Property", item.get("ListingKey"), item, parse_time(stamp), stamp)
        mapped = mapper.map(raw, tenant="t", connection="c", system="mls")
        assert isinstance(mapped, Change)  # noqa: S101 - the simulator's good records
        changes.append(mapped)
    spent["map"] = time.perf_counter() - started
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES if name != "raw"}
    previous, now = "0" * 64, "2026-11-27T00:00:00Z"
    for seq, change in enumerate(changes, 1):
        started = time.perf_counter()
        values = validate_fields("Listing", change.fields)
        spent["validate"] += time.perf_counter() - started
        started = time.perf_counter()
        record_id, event_id, origin = uuid.uuid4().hex, str(uuid.uuid4()), change.origin
        data = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
        rows["records"].append(("t", "Listing", record_id, 1, data,
                                hashlib.sha256(data).hexdigest(), 0, now))  # fmt: skip
        stamp_values = [origin.system, origin.connection, now, origin.source_version, 1.0, now]
        provenance = {"stamps": [stamp_values], "fields": dict.fromkeys(values, 0)}
        rows["provenance"].append(("t", "Listing", record_id, orjson.dumps(provenance)))
        rows["xref"].append(("t", "mls", "c", "Listing", origin.external_id, record_id))
        event = {"id": event_id, "type": "cadastre.listing.created.v1", "time": now,
                 "data": {"fields": values, "idempotency_key": change.idempotency_key}}  # fmt: skip
        rows["outbox"].append((event_id, "t", orjson.dumps(event), now))
        detail = {"applied": list(values), "event_id": event_id, "version": 1}
        entry = orjson.dumps({"seq": seq, "at": now, "entity_id": record_id, "detail": detail},
                             option=orjson.OPT_SORT_KEYS)  # fmt: skip
        chained = hashlib.sha256(previous.encode() + entry).hexdigest()
        rows["audit"].append(("t", seq, now, "mls", "change.applied", "Listing", record_id,
                              orjson.dumps(detail), previous, chained))  # fmt: skip
        previous = chained
        rows["applied"].append(("t", change.idempotency_key, orjson.dumps(detail)))
        spent["build"] += time.perf_counter() - started
    started = time.perf_counter()
    insert(db, rows)
    spent["sqlite"] = time.perf_counter() - started
    return {stage: seconds / len(items) * 1e6 for stage, seconds in spent.items()}


def baseline(page: bytes, db: sqlite3.Connection) -> float:
    started = time.perf_counter()
    items = orjson.loads(page)["value"]
    rows = [(r["ListingKey"], r["ModificationTimestamp"], orjson.dumps(r)) for r in items]
    insert(db, {"raw": rows})
    return (time.perf_counter() - started) / len(items) * 1e6


def main(count: int) -> None:
    simulator = ResoSimulator(records=count, seed=7, rate_limit=None)
    page = orjson.dumps({"value": [dict(r) for r in simulator.records.values()]})
    with tempfile.TemporaryDirectory(prefix="cadastre-floor-") as folder:
        db = database(Path(folder))
        base = baseline(page, db)
        stages = floor(page, db)
        db.close()
    total = sum(stages.values())
    fields = len(simulator.records[next(iter(simulator.records))])
    print(f"{count:,} records of {fields} fields, microseconds per record")
    print(f"baseline (parse + executemany of the JSON)   {base:8.0f}")
    for stage, micros in stages.items():
        print(f"floor: {stage:<38} {micros:8.0f}")
    print(f"floor, all stages                            {total:8.0f}")
    print(f"best ratio any engine doing this work reaches in-process: {base / total:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    main(parser.parse_args().records)
