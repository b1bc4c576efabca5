"""The bare endpoint ``bench/events.py`` measures Cadastre's webhook receiver against: a raw ASGI
app on the same uvicorn that reads the body and stores the message (id, connection, headers,
body) in SQLite (WAL, synchronous=NORMAL, as Cadastre's store) before answering 200, and nothing
else: no signature check, no routing, no framework.

Two modes, both reported: ``--group`` writes every request queued behind a commit in the next
transaction (the group commit Cadastre's inbox does), the default commits once per request. The
benchmark compares Cadastre with the faster of the two in the same run.

    .venv/bin/python -m bench.events_bare --port 8765 --db var/bare.db [--group]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from typing import Any

import orjson
import uvicorn

SCHEMA = """CREATE TABLE IF NOT EXISTS inbox (
    connection TEXT NOT NULL, message_id TEXT NOT NULL, received_at REAL NOT NULL,
    headers TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (connection, message_id))"""
INSERT = "INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?, ?)"


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(SCHEMA)
    return db


class Bare:
    def __init__(self, db: sqlite3.Connection, *, group: bool) -> None:
        self.db = db
        self.group = group
        self.queue: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        row = (scope["path"], headers.get("webhook-id", ""), time.time(),
               orjson.dumps(headers).decode(), body)  # fmt: skip
        if self.group:
            await self.grouped(row)
        else:
            # The write runs in a thread, as aiosqlite runs Cadastre's: the loop keeps serving.
            await asyncio.to_thread(self.write, [row])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(INSERT, rows)
        self.db.execute("COMMIT")

    async def grouped(self, row: tuple[Any, ...]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append((row, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self.drain())
        await done

    async def drain(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            await asyncio.to_thread(self.write, [row for row, _ in batch])
            for _, done in batch:
                done.set_result(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--group", action="store_true", help="group commit")
    args = parser.parse_args()
    app = Bare(open_db(args.db), group=args.group)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
