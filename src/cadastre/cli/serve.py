"""``cadastre serve``: the HTTP API on uvicorn until Ctrl-C or SIGTERM; and ``serve_app``, which
runs any ASGI app on uvicorn inside the current event loop (the demo and the tests use it).

The listening socket is bound here rather than by uvicorn, which answers a port in use with
``sys.exit``; here it is an ``OSError`` a caller can report. Port 0 picks a free port, and the
URL that ``serve_app`` gives says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import typer
import uvicorn
from starlette.types import ASGIApp

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.errors import CadastreError, ConfigurationError
from cadastre.observe import get_logger
from cadastre.sync.scheduler import SyncScheduler

_log = get_logger("cadastre.vault.rotation")
# Requests still running when asked to stop get this long to finish.
GRACE_SECONDS = 5


class _Server(uvicorn.Server):
    """uvicorn's server with its signal handling made optional: embedded in the demo or a test,
    Ctrl-C belongs to the host program; serving alone, SIGINT and SIGTERM ask for a graceful
    stop (uvicorn's own handling re-raises the signal afterwards, which would skip our
    clean-up)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


@dataclass
class RunningApp:
    url: str  # e.g. "http://127.0.0.1:8700", no trailing slash
    _server: _Server
    _task: asyncio.Task[None]

    async def wait(self) -> None:
        """Until the server stops (a signal, when it handles them, or ``stop()``)."""
        await asyncio.shield(self._task)

    def stop(self) -> None:
        self._server.should_exit = True


async def _bind(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        family, kind, proto, _, address = (
            await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


async def _run(server: _Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn's answer to a failed application startup
        raise RuntimeError(f"the server could not start (exit status {exc.code})") from None
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, handle_signals: bool = False
) -> AsyncIterator[RunningApp]:
    """Serve ``app`` in this event loop; inside the block it answers at ``running.url``.
    Leaving the block stops it gracefully. ``ConfigurationError`` when it cannot listen."""
    sock = await _bind(host, port)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, server_header=False, ws="none",
        timeout_graceful_shutdown=GRACE_SECONDS,
    )  # fmt: skip
    server = _Server(config, handle_signals=handle_signals)
    task = asyncio.create_task(_run(server, sock))
    try:
        while not server.started:  # uvicorn has no "ready" event; startup takes a few ticks
            if task.done():
                await task
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.005)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningApp(f"http://{shown}:{bound_port}", server, task)
    finally:
        server.should_exit = True
        await task


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every one)"),
    port: int = typer.Option(8700, min=0, max=65535, help="port to listen on (0: any free)"),
    schedule: bool | None = typer.Option(
        None,
        "--schedule/--no-schedule",
        help="run each connection's scheduled syncs and key reconciliations (default: "
        "CADASTRE_SCHEDULE_SYNCS, on)",
    ),
) -> None:
    """Serve the HTTP API (docs at /docs) until Ctrl-C: webhooks in and out, the outbox relay,
    and each connection's scheduled syncs."""
    run(lambda hub: _serve(hub, host, port, schedule))
    console.print("stopped")


async def _serve(hub: Hub, host: str, port: int, schedule: bool | None = None) -> None:
    # Imported here: FastAPI costs every other command a fifth of a second at start-up.
    from cadastre.api import create_app
    from cadastre.cli.connections import check_claims

    for tenant in await hub.tenants.all():  # ownership drift stops the hub before it serves
        await check_claims(hub, tenant.id)
    # The background workers (outbox relay, bus consumers, webhook normaliser, deliveries) run
    # while the API serves; they stop after it, so an accepted webhook is not left unread.
    async with (
        hub.running(),
        serve_app(create_app(hub), host, port, handle_signals=True) as running,
    ):
        console.print(
            f"Cadastre API at {running.url} (docs at {running.url}/docs); Ctrl-C stops",
            soft_wrap=True,
        )
        every = hub.settings.vault_rotation_check_seconds
        background = [asyncio.create_task(rotate_keys(hub, every))] if every else []
        if hub.settings.schedule_syncs if schedule is None else schedule:
            # no scheduler lock: Hub.sync and Hub.reconcile lock each run themselves
            scheduler = SyncScheduler(
                hub.clock, hub.scheduled_jobs, hub.run_job, None,
                parallel=hub.settings.schedule_parallel,
            )  # fmt: skip
            background.append(asyncio.create_task(scheduler.run_forever()))
        try:
            await running.wait()
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def rotate_keys(hub: Hub, every: float) -> None:
    """Scheduled API-key rotation while the hub serves: every ``every`` seconds, rotate the keys
    that are due; one that fails is logged (with what to do) and tried again next time."""
    while True:
        try:
            for tenant, name, error in await hub.rotate_due():
                if error is None:
                    _log.info("rotated the API key of credential %r (tenant %r)", name, tenant)
                else:
                    _log.warning("could not rotate credential %r (tenant %r): %s; run "
                                 "`cadastre credentials rotate %s -t %s` to retry",
                                 name, tenant, error, name, tenant)  # fmt: skip
        except CadastreError as exc:  # the store, say: the next round tries again
            _log.warning("scheduled key rotation failed: %s", exc)
        await hub.clock.sleep(every)
