"""Ingest: a full sync of ``--records`` listings from the RESO simulator into SQLite, then an
incremental sync after 1 % of them change, against a minimal baseline measured in the same run
against the same server (httpx + orjson + sqlite3 ``executemany``: page through the feed and
store each record's JSON, nothing else).

The simulator runs in its own process with its rate limit off, so both clients get the whole of
one core for themselves and the server the other. The figures that matter are the ratios:

    ratio_full = cadastre records/s (full sync) / baseline records/s   (target >= 0.4)
    incremental_seconds / full_seconds                                  (target <= 0.2)

With ``--dialects N`` (1 to 4) the run then starts N regional dialect simulators (mlsgrid,
trestle, bridge, spark; ``--records`` split between them, rate limits off as for the baseline) and
full-syncs them concurrently through one hub: one tenant, N connections, each with its own
mapping file from ``mappings/`` and the page size its dialect allows. The baseline client first
reads the same N servers at once, with the same page sizes (one client and SQLite file each, in
one process, as the hub is one process). The JSON line adds

    multi_dialect_baseline_rps = records/s of those N baseline clients together
    multi_dialect_rps   = records/s over the concurrent run (all connections together)
    multi_dialect_ratio = multi_dialect_rps / multi_dialect_baseline_rps       (target >= 0.4)

    .venv/bin/python bench/ingest.py [--records 50000] [--page 1000] [--dialects 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from cadastre.bootstrap import bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.simulators import spawn
from cadastre.simulators.reso import load_dialect

if TYPE_CHECKING:
    from cadastre.sync import SyncTally

CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the simulator's published demo login
ORDER = "ModificationTimestamp,ListingKey"
DIALECTS = ("mlsgrid", "trestle", "bridge", "spark")
MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"  # the dialects' mapping files


async def baseline(base: str, page: int, path: Path) -> tuple[int, float]:
    """The least a client can do: token, page through nextLink, executemany each page."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE listing (key TEXT PRIMARY KEY, modified TEXT, data TEXT)")
    count = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        token = (await client.post(f"{base}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        })).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        url: str | None = f"{base}/odata/Property"
        params: dict[str, Any] | None = {"$top": page, "$orderby": ORDER}
        while url:
            response = await client.get(url, params=params, headers=headers)
            response.raise_for_status()
            body = orjson.loads(response.content)
            rows = [(r.get("ListingKey"), r.get("ModificationTimestamp"), orjson.dumps(r))
                    for r in body["value"]]  # fmt: skip
            db.executemany("INSERT OR REPLACE INTO listing VALUES (?, ?, ?)", rows)
            db.commit()
            count += len(rows)
            url, params = body.get("@odata.nextLink"), None
    seconds = time.perf_counter() - started
    db.close()
    return count, seconds


async def cadastre_syncs(base: str, page: int, data_dir: Path, records: int) -> dict[str, Any]:
    mappings = data_dir / "mappings"
    mappings.mkdir(parents=True)
    (mappings / "bench-mls.yaml").write_text(
        "mapping: bench-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
    )
    settings = Settings(data_dir=data_dir, mappings_dir=mappings, log_level="WARNING",
                        gateway_allow_hosts=("127.0.0.0/8", "::1"))  # fmt: skip
    hub = await bootstrap(settings)
    try:
        await hub.tenants.create("bench", "Bench")
        await hub.vault.add("bench", "bench-mls", "oauth2_client_credentials",
                            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})  # fmt: skip
        await hub.connections.add("bench", ConnectionSpec(
            name="bench-mls", system="mls", connector="mls/reso",
            credential="bench-mls",
            config={"base_url": f"{base}/odata", "token_url": f"{base}/oauth/token",
                    "mapping": "bench-mls", "page_size": page,
                    "gateway": {"allow_hosts": ["127.0.0.0/8", "::1"]}},
        ))  # fmt: skip
        tallies: list[SyncTally] = []
        started = time.perf_counter()
        full = await hub.sync("bench", "bench-mls", progress=tallies.append)
        full_seconds = time.perf_counter() - started
        async with httpx.AsyncClient(timeout=60) as client:
            touched = await client.post(f"{base}/admin/touch", json={"count": records // 100})
            touched.raise_for_status()
        started = time.perf_counter()
        incremental = await hub.sync("bench", "bench-mls")
        incremental_seconds = time.perf_counter() - started
    finally:
        await hub.close()
    return {
        "full_records": full.tally.fetched,
        "full_quarantined": full.tally.quarantined,
        "full_seconds": full_seconds,
        "incremental_records": incremental.tally.fetched,
        "incremental_updated": incremental.tally.updated,
        "incremental_duplicates": incremental.tally.duplicates,
        "incremental_seconds": incremental_seconds,
    }


def dialect_page(name: str, page: int) -> int:
    return min(page, load_dialect(name).page.max)


async def multi_dialect_baseline(bases: dict[str, str], page: int, folder: Path) -> float:
    """Records/s of the baseline client reading every dialect server at once."""
    started = time.perf_counter()
    counts = await asyncio.gather(*(
        baseline(base, dialect_page(name, page), folder / f"baseline-{name}.db")
        for name, base in bases.items()
    ))  # fmt: skip
    return sum(count for count, _ in counts) / (time.perf_counter() - started)


async def multi_dialect_syncs(bases: dict[str, str], page: int, data_dir: Path) -> dict[str, Any]:
    """Full syncs of every dialect at once: one tenant, one connection (and mapping) each."""
    settings = Settings(data_dir=data_dir, mappings_dir=MAPPINGS, log_level="WARNING",
                        gateway_allow_hosts=("127.0.0.0/8", "::1"))  # fmt: skip
    hub = await bootstrap(settings)
    try:
        await hub.tenants.create("bench", "Bench")
        login = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        for name, base in bases.items():
            await hub.vault.add("bench", name, "oauth2_client_credentials", login)
            await hub.connections.add("bench", ConnectionSpec(
                name=name, system="mls", connector="mls/reso", credential=name,
                config={"base_url": f"{base}/odata", "token_url": f"{base}/oauth/token",
                        "mapping": name, "page_size": dialect_page(name, page),
                        "gateway": {"allow_hosts": ["127.0.0.0/8", "::1"]}},
            ))  # fmt: skip
        started = time.perf_counter()
        results = await asyncio.gather(*(hub.sync("bench", name) for name in bases))
        seconds = time.perf_counter() - started
    finally:
        await hub.close()
    return {
        "multi_dialect_records": sum(r.tally.fetched for r in results),
        "multi_dialect_quarantined": sum(r.tally.quarantined for r in results),
        "multi_dialect_seconds": seconds,
        "multi_dialect_by_connection": {
            name: r.tally.fetched for name, r in zip(bases, results, strict=True)
        },
    }


async def main(records: int, page: int, dialects: int = 0) -> dict[str, Any]:
    simulator = spawn("reso", "--records", str(records), "--seed", "7", "--no-rate-limit",
                      "--page-size-max", str(page))  # fmt: skip
    with simulator as base, tempfile.TemporaryDirectory(prefix="cadastre-ingest-") as folder:
        count, base_seconds = await baseline(base, page, Path(folder) / "baseline.db")
        ours = await cadastre_syncs(base, page, Path(folder) / "hub", records)
    multi: dict[str, Any] = {}
    multi_baseline_rps = 0.0
    if dialects:
        names, share = DIALECTS[:dialects], records // dialects
        with (
            contextlib.ExitStack() as stack,
            tempfile.TemporaryDirectory(prefix="cadastre-ingest-multi-") as folder,
        ):
            bases = {name: stack.enter_context(spawn(
                "reso", "--dialect", name, "--records", str(share), "--seed", "7",
                "--no-rate-limit",
            )) for name in names}  # fmt: skip
            multi_baseline_rps = await multi_dialect_baseline(bases, page, Path(folder))
            multi = await multi_dialect_syncs(bases, page, Path(folder) / "hub")
    baseline_rps = count / base_seconds
    cadastre_rps = ours["full_records"] / ours["full_seconds"]
    if multi:
        multi_rps = multi["multi_dialect_records"] / multi["multi_dialect_seconds"]
        multi |= {"multi_dialect_baseline_rps": round(multi_baseline_rps, 1),
                  "multi_dialect_rps": round(multi_rps, 1),
                  "multi_dialect_ratio": round(multi_rps / multi_baseline_rps, 3),
                  # against the single-connection sync of the same run: what concurrency costs
                  "multi_dialect_vs_single": round(multi_rps / cadastre_rps, 3),
                  "multi_dialect_seconds": round(multi["multi_dialect_seconds"], 3)}  # fmt: skip
    return {
        "records": records,
        "page": page,
        "baseline_records": count,
        "baseline_seconds": round(base_seconds, 3),
        "baseline_rps": round(baseline_rps, 1),
        "cadastre_rps": round(cadastre_rps, 1),
        "ratio_full": round(cadastre_rps / baseline_rps, 3),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()},
        "incremental_share": round(ours["incremental_seconds"] / ours["full_seconds"], 3),
        **multi,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--dialects", type=int, default=0, choices=range(len(DIALECTS) + 1),
                        help="also sync this many regional dialects concurrently")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    result = asyncio.run(main(args.records, args.page, args.dialects))
    r = result
    print(f"records {r['records']:,}, page {r['page']}")
    print(f"baseline  full  {r['baseline_rps']:>10,.0f} rec/s ({r['baseline_seconds']:.1f} s)")
    print(f"cadastre  full  {r['cadastre_rps']:>10,.0f} rec/s ({r['full_seconds']:.1f} s, "
          f"{r['full_quarantined']} quarantined)  ratio_full {r['ratio_full']:.2f}")  # fmt: skip
    print(f"cadastre  incr  {r['incremental_records']:,} records in "
          f"{r['incremental_seconds']:.2f} s = {r['incremental_share']:.1%} of full")  # fmt: skip
    if "multi_dialect_rps" in r:
        print(f"cadastre  {args.dialects} dialects {r['multi_dialect_rps']:>7,.0f} rec/s "
              f"({r['multi_dialect_records']:,} records in {r['multi_dialect_seconds']:.1f} s, "
              f"{r['multi_dialect_quarantined']} quarantined)  "
              f"multi_dialect_ratio {r['multi_dialect_ratio']:.2f} (baseline on the same "
              f"servers {r['multi_dialect_baseline_rps']:,.0f} rec/s)")  # fmt: skip
    if args.json:
        print(orjson.dumps(result).decode())
