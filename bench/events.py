"""Canonical events end to end: webhooks accepted per second, and the latency from a vendor's
webhook to a subscriber's delivery, on the embedded default and on NATS JetStream.

1. **Accepted per second** runs ``bench/webhooks_in.py`` with the hub's background workers on (as
   ``cadastre serve`` runs): signed webhooks posted by 64 keep-alive connections to
   ``POST /webhooks/{tenant}/{connection}`` (verified, written to the inbox, 200 after the commit)
   and, in the same run, to the bare endpoint of ``bench/events_bare.py`` (the same durable write,
   nothing else): ``webhooks_per_s`` and ``bare_ratio``.
2. **Webhook to subscriber**: ``cadastre serve`` (the CLI, in its own process, SQLite under a
   temporary folder) with a webhook-driven RESO connection and one subscription to
   ``cadastre.listing.created.v1`` pointing at a receiver in this process. This process posts RESO
   EntityEvent notifications (one new listing each, in the records the RESO simulator serves) at
   ``--rate`` per second, and times each from just before its POST to the moment the receiver has
   the delivery: verification, the inbox, the normaliser (mapping, the sync engine, the
   transaction with its outbox event), the relay, the bus, the dispatcher, the sender and HTTP.
   Sender and receiver share this process's clock. Then the same on NATS (a private nats-server
   with JetStream on a free port, so nothing shared is touched): ``CADASTRE_BUS=nats``.

    .venv/bin/python -m bench.events [--requests 20000] [--e2e 600] [--rate 40] [--no-nats]
                                     [--json]

``--json`` makes the last line one JSON object with ``webhooks_per_s``, ``bare_per_s``,
``bare_ratio``, ``e2e_p50_ms``, ``e2e_p99_ms``, ``nats_e2e_p50_ms`` and ``nats_e2e_p99_ms``.
Targets (issue 7, embedded default): >= 1,000 webhooks/s, ``bare_ratio`` >= 0.5, p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from cadastre.simulators import spawn
from cadastre.webhooks import standard

if TYPE_CHECKING:
    from collections.abc import Iterator

TENANT, CONNECTION, CREDENTIAL = "bench", "mls", "mls-hooks"
SECRET = standard.new_secret()
ROOT = Path(__file__).resolve().parent.parent
RESO_CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ------------------------------------------------------------------------ accepted per second


def throughput(requests: int, concurrency: int) -> dict[str, Any]:
    """``bench/webhooks_in.py --workers --json``, its last line."""
    answer = subprocess.run(  # noqa: S603 - our own benchmark module
        [sys.executable, "-m", "bench.webhooks_in", "--requests", str(requests),
         "--concurrency", str(concurrency), "--workers", "--json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = orjson.loads(answer.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------ webhook to subscriber


class Receiver:
    """The subscriber: a bare HTTP/1.1 server that notes when each listing's delivery arrived
    (by the external id in the event's origin) and answers 204. Written on asyncio streams so the
    receiver costs this process as little as possible."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.applied: dict[str, float] = {}  # the event's time: when the change committed
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line[15:])
                body = await reader.readexactly(length)
                now = time.perf_counter()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                event = orjson.loads(body)
                key = str(event["data"]["origin"]["external_id"])
                self.arrived.setdefault(key, now)
                self.applied.setdefault(key, datetime.fromisoformat(event["time"]).timestamp())
                if (future := self.waiting.get(key)) is not None and not future.done():
                    future.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def sample_records(count: int) -> list[dict[str, Any]]:
    """Listings as the RESO simulator serves them (its default dialect)."""
    with spawn("reso", "--records", str(count), "--no-rate-limit") as base:
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=("demo-client", "demo-secret")).json()["access_token"]  # fmt: skip
        page = httpx.get(f"{base}/odata/Property", params={"$top": str(count)},
                         headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    return list(page["value"])


def notification(record: dict[str, Any], key: str, sequence: int) -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = {**record, "ListingKey": key, "ModificationTimestamp": stamp}
    event = {"EntityEventSequence": sequence, "ResourceName": "Property",
             "ResourceRecordKey": key, "ModificationTimestamp": stamp,
             "EventTypes": ["Created"], "Data": data}  # fmt: skip
    return orjson.dumps({"@reso.context": RESO_CONTEXT, "value": [event]})


def signed(body: bytes, msg_id: str) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard.signature(standard.secret_key(SECRET), msg_id, stamp, body),
    }


async def set_up(env: dict[str, str], receiver_url: str) -> None:
    """Tenant, the MLS's webhook secret, the webhook-driven connection, the subscription."""

    async def cli(*args: str, stdin: str | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "cadastre"), *args, env=env, cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate(stdin.encode() if stdin else None)
        if process.returncode:
            raise RuntimeError(f"cadastre {' '.join(args)}: {out.decode()}")
        return out.decode()

    await cli("tenants", "create", TENANT, "--name", "Bench")
    await cli("credentials", "add", CREDENTIAL, "-t", TENANT, "--scheme", "webhook_secret",
              "--secret-field", "secret", stdin=SECRET + "\n")  # fmt: skip
    config = {"base_url": "https://mls.invalid/odata", "mapping": "demo-mls",
              "ingestion": "webhook",
              "webhook": {"scheme": "standard_webhooks", "credential": CREDENTIAL}}  # fmt: skip
    await cli("connections", "add", CONNECTION, "-t", TENANT, "--connector", "mls/reso",
              "--system", "mls", "--config", orjson.dumps(config).decode())  # fmt: skip
    await cli("subscriptions", "add", "-t", TENANT, "--url", receiver_url,
              "--event", "cadastre.listing.created.v1")  # fmt: skip


async def end_to_end(
    folder: Path, *, count: int, rate: float, nats_url: str | None
) -> dict[str, float]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"
    data = folder / ("var-nats" if nats_url else "var")
    env = {**os.environ, "CADASTRE_DATA_DIR": str(data), "CADASTRE_LOG_LEVEL": "WARNING",
           "CADASTRE_MAPPINGS_DIR": str(ROOT / "mappings"),
           "CADASTRE_GATEWAY_ALLOW_HOSTS": '["127.0.0.0/8"]',
           "CADASTRE_SCHEDULE_SYNCS": "false"}  # fmt: skip
    env.pop("CADASTRE_DATABASE_URL", None)
    if nats_url:
        env |= {"CADASTRE_BUS": "nats", "CADASTRE_NATS_URL": nats_url}
    await set_up(env, receiver_url)
    records = await asyncio.to_thread(sample_records, 50)
    port = free_port()
    hub_args = [str(ROOT / ".venv" / "bin" / "cadastre"), "serve", "--port", str(port),
                "--no-schedule"]  # fmt: skip
    latencies: list[float] = []
    to_applied: list[float] = []  # webhook sent -> change committed (wall clock, both processes)
    with running(hub_args, env, folder / f"hub{'-nats' if nats_url else ''}.log") as hub:
        await asyncio.to_thread(wait_for_port, port, hub)
        url = f"http://127.0.0.1:{port}/webhooks/{TENANT}/{CONNECTION}"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def one(i: int, *, timed: bool) -> None:
                key = f"BENCH{'N' if nats_url else 'E'}{i:07d}"
                body = notification(records[i % len(records)], key, i)
                arrived = asyncio.get_running_loop().create_future()
                receiver.waiting[key] = arrived
                began, wall = time.perf_counter(), time.time()
                answer = await client.post(url, content=body, headers=signed(body, f"msg_{key}"))
                if answer.status_code != 200:
                    raise RuntimeError(f"webhook {key}: {answer.status_code} {answer.text}")
                await asyncio.wait_for(arrived, timeout=60)
                if timed:
                    latencies.append(receiver.arrived[key] - began)
                    to_applied.append(receiver.applied[key] - wall)

            warm = 40  # the connector opened, pools and caches filled, before timing
            await asyncio.gather(*(one(i, timed=False) for i in range(warm)))
            tasks = []
            started = time.perf_counter()
            for n in range(count):  # an open loop: one webhook every 1/rate s, answered or not
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(warm + n, timed=True)))
            await asyncio.gather(*tasks)
    server.close()
    latencies.sort()
    to_applied.sort()
    return {
        "applied_p50_ms": to_applied[len(to_applied) // 2] * 1000,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "deliveries": len(latencies),
    }


@contextlib.contextmanager
def private_nats(folder: Path) -> Iterator[str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    store = folder / "nats"
    store.mkdir()
    args = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    with running(args, dict(os.environ), folder / "nats.log") as process:
        wait_for_port(port, process)
        yield f"nats://127.0.0.1:{port}"


def report(what: str, rate: float, figures: dict[str, float]) -> None:
    print(f"webhook to subscriber, {what}, {rate:g}/s: p50 {figures['p50_ms']:.1f} ms, "
          f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms over "
          f"{figures['deliveries']:.0f} deliveries (p50 {figures['applied_p50_ms']:.1f} ms of "
          "it until the change committed)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="webhooks for the rate")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--e2e", type=int, default=600, help="webhooks timed end to end")
    parser.add_argument("--rate", type=float, default=40.0, help="end-to-end webhooks per second")
    parser.add_argument("--no-nats", action="store_true", help="skip the NATS run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    accepted = throughput(args.requests, args.concurrency)
    print(f"webhooks accepted: {accepted['webhooks_per_s']:,}/s (p50 {accepted['p50_ms']} ms, "
          f"p99 {accepted['p99_ms']} ms); bare endpoint {accepted['bare_per_s']:,}/s; "
          f"bare_ratio {accepted['bare_ratio']:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        embedded = asyncio.run(end_to_end(folder, count=args.e2e, rate=args.rate, nats_url=None))
        report("embedded (SQLite, in-process bus)", args.rate, embedded)
        nats: dict[str, float] = {}
        if not args.no_nats:
            with private_nats(folder) as url:
                nats = asyncio.run(end_to_end(folder, count=args.e2e, rate=args.rate,
                                              nats_url=url))  # fmt: skip
            report("NATS JetStream (SQLite store)", args.rate, nats)
    if args.json:
        print(orjson.dumps({
            "webhooks_per_s": accepted["webhooks_per_s"],
            "bare_per_s": accepted["bare_per_s"],
            "bare_ratio": accepted["bare_ratio"],
            "e2e_p50_ms": round(embedded["p50_ms"], 2),
            "e2e_p99_ms": round(embedded["p99_ms"], 2),
            "nats_e2e_p50_ms": round(nats["p50_ms"], 2) if nats else None,
            "nats_e2e_p99_ms": round(nats["p99_ms"], 2) if nats else None,
            "rate_per_s": args.rate,
        }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
