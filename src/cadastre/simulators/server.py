"""Run a simulator's ASGI app on a real socket, inside the caller's event loop.

``serve`` binds the socket itself (port 0 gives a free port, read back from the bound socket) and
drives ``uvicorn.Server``'s startup and shutdown directly rather than ``Server.serve()``, which
would take over SIGINT/SIGTERM of the test process. On exit, connections still busy after a short
grace (hung requests, or latency on a fake clock nobody advances) are cut, so shutdown never waits
on a request that will not finish. A lost response (``InjectedLostResponse``) closes its
connection before any byte is written, where uvicorn on its own would answer 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from cadastre.simulators.faults import InjectedLostResponse, InjectedReset

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.types import ASGIApp, Receive, Scope, Send

BUSY_GRACE_SECONDS = 0.25
POLL_SECONDS = 0.01
# A backstop only: after the cut above nothing should still be running.
SHUTDOWN_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _DropInjectedResets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedReset))


_RESET_FILTER = _DropInjectedResets()


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningServer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP, and without it Nagle holds each response body for the client's delayed ACK,
    # 40 ms per request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    server: uvicorn.Server | None = None

    async def losing_responses(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except InjectedLostResponse:
            if server is not None:
                _close_connection(server, scope.get("client"))
            raise

    config = uvicorn.Config(
        losing_responses,
        host=host,
        port=sock.getsockname()[1],
        interface="asgi3",  # not guessed from the callable, which may be a bound method
        lifespan="off",
        ws="none",
        log_level="warning",
        log_config=None,  # leave the host process's logging configuration alone
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_SECONDS,
    )
    # Idempotent: the same filter object is added once however many servers run.
    logging.getLogger("uvicorn.error").addFilter(_RESET_FILTER)
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    ticker = asyncio.ensure_future(server.main_loop())  # refreshes the Date header
    try:
        yield RunningServer(host=host, port=sock.getsockname()[1])
    finally:
        server.should_exit = True
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await _cut_busy_connections(server)
        await server.shutdown(sockets=[sock])


def _close_connection(server: uvicorn.Server, client: object) -> None:
    """Close the connection a request came in on, found by its peer address. Closed before uvicorn
    sees the exception, its fallback 500 goes nowhere: the client reads no response at all."""
    if not isinstance(client, tuple | list):
        return
    peer = tuple(client)
    for connection in list(server.server_state.connections):
        if getattr(connection, "client", None) == peer:
            connection.transport.close()


async def _cut_busy_connections(server: uvicorn.Server) -> None:
    connections = server.server_state.connections
    for connection in list(connections):
        connection.shutdown()  # idle ones close now; busy ones close after their response
    for _ in range(round(BUSY_GRACE_SECONDS / POLL_SECONDS)):
        if not connections:
            break
        await asyncio.sleep(POLL_SECONDS)
    for connection in list(connections):
        connection.transport.close()
    # Let connection_lost run, so the requests see their disconnect and end.
    for _ in range(3):
        await asyncio.sleep(0)


@contextlib.contextmanager
def spawn(kind: str, *args: str) -> Iterator[str]:
    """Run ``python -m cadastre.simulators <kind> --port 0 <args>`` in a process of its own (so
    it has a core to itself in a benchmark) and yield its URL; it is stopped on exit."""
    process = subprocess.Popen(  # noqa: S603 - our own module, arguments from our callers
        [sys.executable, "-m", "cadastre.simulators", kind, "--port", "0", *args],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline().strip() if process.stdout else ""
        if not line.startswith("ready "):
            raise RuntimeError(f"the {kind} simulator did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
