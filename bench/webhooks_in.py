"""Webhooks accepted per second by ``POST /webhooks/{tenant}/{connection}`` (verified and durably
written), against the bare endpoint of ``bench/events_bare.py`` (same uvicorn, same SQLite
settings, group commit, no verification, no framework) in the same run.

Both run in processes of their own, on the same kind of event loop (uvloop where it is
installed: ``uvicorn.run`` picks it for the bare endpoint, ``cadastre.cli.runtime.run_loop`` for
the hub, as for every ``cadastre`` command); the load comes from this one, through plain sockets
with keep-alive (an HTTP client library would cost more CPU than the servers), each request
signed ahead (Standard Webhooks), ``--concurrency`` connections at once, the same for both.

The machine is shared, and its load changes from second to second: so the ``--requests`` are
sent in ``--rounds`` turns, each endpoint in turn (the first one alternating), and each rate is
its requests over its time summed over the rounds. The ratio of each round is shown too.

    .venv/bin/python -m bench.webhooks_in [--requests 20000] [--rounds 4] [--concurrency 64]
                                          [--workers] [--json]

``--workers`` also runs the hub's background workers (the normaliser among them) in the
receiving process, as ``cadastre serve`` does. ``--json`` makes the last line one JSON object
with ``webhooks_per_s``, ``bare_per_s``, ``bare_ratio``, ``p50_ms`` and ``p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from cadastre.webhooks import standard

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = standard.new_secret()
TENANT, CONNECTION = "acme", "mls"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _prepare(data: Path) -> None:
    from cadastre.bootstrap import bootstrap
    from cadastre.config import Settings
    from cadastre.directory import ConnectionSpec

    hub = await bootstrap(Settings(data_dir=data), configure_logs=False)
    try:
        await hub.tenants.create(TENANT, "Acme")
        await hub.vault.add(TENANT, "hooks", "webhook_secret", {"secret": SECRET})
        block = {"scheme": "standard_webhooks", "credential": "hooks"}
        await hub.connections.put(TENANT, ConnectionSpec(
            name=CONNECTION, system="mls", connector="mls/reso",
            config={"base_url": "https://mls.invalid/odata", "webhook": block},
        ))  # fmt: skip
    finally:
        await hub.close()


async def _serve(data: Path, port: int, workers: bool) -> None:
    from cadastre.api import create_app
    from cadastre.bootstrap import bootstrap
    from cadastre.cli.serve import serve_app
    from cadastre.config import Settings

    hub = await bootstrap(Settings(data_dir=data, log_level="WARNING"), migrate=False)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if workers:
                await stack.enter_async_context(hub.running())
            await stack.enter_async_context(serve_app(create_app(hub), port=port))
            print("ready", flush=True)
            await asyncio.Event().wait()
    finally:
        await hub.close()


def _requests(n: int) -> list[bytes]:
    key = standard.secret_key(SECRET)
    made = []
    for i in range(n):
        body = orjson.dumps({"value": [{"ListingKey": f"K{i}", "ListPrice": i}]})
        msg_id, stamp = f"msg_{i}_{time.time_ns()}", int(datetime.now(UTC).timestamp())
        head = (f"POST /webhooks/{TENANT}/{CONNECTION} HTTP/1.1\r\nHost: bench\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"webhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\nwebhook-signature: "
                f"{standard.signature(key, msg_id, stamp, body)}\r\n\r\n")  # fmt: skip
        made.append(head.encode() + body)
    return made


async def _load(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def one_connection(mine: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for request in mine:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if head.split(b" ", 2)[1] != b"200":
                raise RuntimeError(f"answered {head.splitlines()[0]!r}")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and int(line[15:]):
                    await reader.readexactly(int(line[15:]))
            latencies.append(time.perf_counter() - began)
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*[one_connection(requests[i::concurrency]) for i in range(concurrency)])
    return len(requests) / (time.perf_counter() - began), sorted(latencies)


@contextlib.contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL)  # noqa: S603
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("DATA", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        from cadastre.cli.runtime import run_loop  # the loop `cadastre serve` runs on

        run_loop(_serve(Path(args.serve[0]), int(args.serve[1]), args.workers))
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "var"
        asyncio.run(_prepare(data))
        ours, bare = _port(), _port()
        serve = ["-m", "bench.webhooks_in", "--serve", str(data), str(ours)]
        bare_args = ["-m", "bench.events_bare", "--port", str(bare), "--group",
                     "--db", str(Path(folder) / "bare.db")]  # fmt: skip
        with (
            _process(*serve, *(["--workers"] if args.workers else [])),
            _process(*bare_args),
        ):
            _wait_ready(ours)
            _wait_ready(bare)
            warm = min(2_000, args.requests)
            asyncio.run(_load(ours, _requests(warm), args.concurrency))  # caches, pools
            asyncio.run(_load(bare, _requests(warm), args.concurrency))
            each = max(1, args.requests // max(1, args.rounds))
            took = {ours: 0.0, bare: 0.0}
            latencies: list[float] = []
            ratios = []
            for turn in range(max(1, args.rounds)):
                rates = {}
                for port in (ours, bare) if turn % 2 == 0 else (bare, ours):
                    rates[port], seen = asyncio.run(_load(port, _requests(each), args.concurrency))
                    took[port] += each / rates[port]
                    latencies += seen if port == ours else []
                ratios.append(rates[ours] / rates[bare])
    sent = each * max(1, args.rounds)
    rate, bare_rate = sent / took[ours], sent / took[bare]
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"webhooks accepted: {rate:,.0f}/s (p50 {p50:.1f} ms, p99 {p99:.1f} ms); "
          f"bare endpoint: {bare_rate:,.0f}/s; ratio {rate / bare_rate:.2f} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})"
          f"{'; workers running' if args.workers else ''}")  # fmt: skip
    if args.json:
        print(orjson.dumps({
            "webhooks_per_s": round(rate), "bare_per_s": round(bare_rate),
            "bare_ratio": round(rate / bare_rate, 3), "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2), "workers": args.workers,
        }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
