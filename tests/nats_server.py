"""NATS for the tests: whether the shared server (``CADASTRE_TEST_NATS_URL``, default loopback
4222) answers, and a private nats-server with JetStream for tests that kill the broker - on a free
loopback port, its store in a folder of the test's, never the shared one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import service_missing
from tests.redis_server import free_port

SHARED_URL = os.environ.get("CADASTRE_TEST_NATS_URL", "nats://127.0.0.1:4222")


def answers(host: str, port: int) -> bool:
    """A NATS server greets every connection with an INFO line."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.settimeout(0.5)
            return conn.recv(8).startswith(b"INFO")
    except OSError:
        return False


def shared_nats_url() -> str:
    hostport = SHARED_URL.rsplit("@", 1)[-1].removeprefix("nats://")
    host, _, port = hostport.partition(":")
    if not answers(host, int(port or 4222)):
        service_missing("nats", f"NATS does not answer at {hostport} (scripts/services.sh nats)")
    return SHARED_URL


class PrivateNats:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("nats-server") or next(
            (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()),
            None,
        )
        if binary is None:
            service_missing("nats", "nats-server is not installed (scripts/services.sh nats)")
        self._binary = binary
        self._store = workdir / "jetstream"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self._binary, "-js", "-sd", str(self._store), "-a", "127.0.0.1",
             "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"private nats-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9: JetStream keeps what it acknowledged (its files survive the process)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
