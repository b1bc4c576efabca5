"""The SSRF guard over real sockets on loopback.

Every test records each address a client socket connects to (``socket.socket.connect``, which
asyncio's ``sock_connect`` calls), so "refused" means no connection was even attempted, not that
one failed. A vendor app listens on 127.0.0.1 throughout: wherever the guard is missing, the
refused URLs below would reach it, as the allow-listed control shows.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import httpcore
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cadastre.errors import AddressRefused, ConfigurationError, VendorRejected
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.address import (
    AddressAllowList,
    IPAddress,
    SystemResolver,
    guarded_transport,
)
from tests.conftest import service_missing
from tests.unit.gateway.conftest import SteppingClock

LOOPBACK = ["127.0.0.0/8", "::1/128"]
PUBLIC = "93.184.215.14"  # never really dialled: the recording backend stops at it
METADATA_PATH = "/latest/meta-data/"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) a socket in this process connects to during the test."""
    seen: list[tuple[str, int]] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple):
            seen.append((address[0], address[1]))
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        if isinstance(address, tuple):
            seen.append((address[0], address[1]))
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


@dataclass
class Vendor:
    url: str
    port: int
    hosts: list[str] = field(default_factory=list)  # the Host header of each request served


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    served: list[str] = []

    async def echo(request: Request) -> Response:
        served.append(request.headers["host"])
        return JSONResponse({"host": request.headers["host"]})

    async def to_metadata(request: Request) -> Response:
        served.append(request.headers["host"])
        return RedirectResponse(f"http://169.254.169.254{METADATA_PATH}", status_code=302)

    app = Starlette(routes=[Route("/echo", echo), Route("/moved", to_metadata)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", ws="none", log_config=None,
        access_log=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    # startup() rather than serve(): serve() would take over the test process's signal handlers
    await server.startup()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Vendor(f"http://127.0.0.1:{port}", port, served)
    finally:
        await server.shutdown()


class MapResolver:
    """A DNS stand-in: each name answers its scripted lists in turn (the last one repeats)."""

    def __init__(self, **names: Sequence[Sequence[str]]) -> None:
        self.names = {name.replace("_", "."): list(answers) for name, answers in names.items()}
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        answers = self.names[host]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ip_address(a) for a in answer]


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Real connects (``httpcore.AnyIOBackend``), except to ``fake`` addresses, which are recorded
    and fail as an unreachable host would, so nothing leaves this machine."""

    def __init__(self, fake: Iterable[str] = ()) -> None:
        self.real = httpcore.AnyIOBackend()
        self.fake = set(fake)
        self.dialled: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[object] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append((host, port))
        if host in self.fake:
            raise httpcore.ConnectError(f"test: {host} is unreachable")
        return await self.real.connect_tcp(host, port, timeout, local_address)

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


def policy() -> VendorPolicy:
    return VendorPolicy(vendor="demo", connect=2.0, read=5.0, max_attempts=3)


# Every textual form of a loopback or metadata host httpx accepts in a URL. The numeric ones are
# the OS resolver's business (inet_aton rules): they are judged on what it answers.
REFUSED_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "017700000001",
    "localhost",
    "LOCALHOST",
    "0",  # 0.0.0.0: Linux delivers a connect to it to a loopback listener
    "0.0.0.0",  # noqa: S104 - a URL host under test, nothing binds
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "169.254.169.254",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_loopback_and_metadata_hosts_are_refused_before_any_connect(
    host: str, vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    clock = SteppingClock()
    async with Gateway(f"http://{host}:{vendor.port}", policy(), clock=clock,
                       transport=guarded_transport()) as gw:  # fmt: skip
        with pytest.raises(AddressRefused) as caught:
            await gw.get("/echo", params={"token": "canary-query-0193"})
    message = str(caught.value)
    assert "resolves only to refused addresses" in message
    assert "canary-query-0193" not in message
    assert connects == []
    assert vendor.hosts == []
    assert clock.sleeps == []  # refused once, not retried


# The same forms, where they reach the vendor on 127.0.0.1 (::1 and 0.0.0.0 have no listener).
REACHABLE_HOSTS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0x7f.1", "017700000001",
                   "localhost", "[::ffff:127.0.0.1]"]  # fmt: skip


@pytest.mark.parametrize("host", REACHABLE_HOSTS)
async def test_allow_listed_loopback_is_reached_by_the_same_forms(
    host: str, vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    transport = guarded_transport(allow=AddressAllowList.parse(LOOPBACK))
    async with Gateway(f"http://{host}:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        response = await gw.get("/echo")
    assert response.status_code == 200
    assert len(vendor.hosts) == 1
    assert [port for _, port in connects] == [vendor.port]
    assert ip_address(connects[0][0]) in {ip_address("127.0.0.1"), ip_address("::ffff:127.0.0.1")}


async def test_the_system_resolver_reads_numeric_forms_as_the_os_does() -> None:
    resolver = SystemResolver()
    for form in ("2130706433", "0x7f000001", "0x7f.1", "127.1"):
        assert await resolver.resolve(form, 80) == [ip_address("127.0.0.1")], form
    assert {ip_address("127.0.0.1"), ip_address("::1")} & set(
        await resolver.resolve("localhost", 80)
    )


async def test_a_configured_name_keeps_its_host_header_on_the_pinned_address(
    vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    resolver = MapResolver(vendor_test=[["127.0.0.1"]])
    transport = guarded_transport(allow=AddressAllowList.parse(["127.0.0.0/8"]), resolver=resolver)
    async with Gateway(f"http://vendor.test:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        assert await gw.get_json("/echo") == {"host": f"vendor.test:{vendor.port}"}
    assert connects == [("127.0.0.1", vendor.port)]
    assert resolver.calls == ["vendor.test"]


async def test_the_same_name_is_refused_without_the_allow_list(
    vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    resolver = MapResolver(vendor_test=[["127.0.0.1"]])
    async with Gateway(f"http://vendor.test:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=guarded_transport(resolver=resolver)) as gw:  # fmt: skip
        with pytest.raises(AddressRefused, match=r"'vendor\.test'.*127\.0\.0\.1 \(loopback\)"):
            await gw.get("/echo")
    assert connects == []
    assert vendor.hosts == []


async def test_a_host_name_entry_allows_that_name_only(
    vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    resolver = MapResolver(sim_local=[["127.0.0.1"]], other_test=[["127.0.0.1"]])
    allow = AddressAllowList.parse(["sim.local"])
    transport = guarded_transport(allow=allow, resolver=resolver)
    async with Gateway(f"http://sim.local:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        assert (await gw.get("/echo")).status_code == 200
    transport = guarded_transport(allow=allow, resolver=resolver)
    async with Gateway(f"http://other.test:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        with pytest.raises(AddressRefused):
            await gw.get("/echo")
    assert connects == [("127.0.0.1", vendor.port)]


async def test_dns_rebinding_cannot_swing_the_connection_to_loopback(
    vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    # The name is public when checked, loopback when asked again. The connection goes to the
    # public address it was judged on (faked unreachable here), never to the name, so the OS
    # resolver gets no second say; the retry's new connection is judged afresh and refused.
    resolver = MapResolver(rebind_test=[[PUBLIC], ["127.0.0.1"]])
    inner = RecordingBackend(fake=[PUBLIC])
    transport = guarded_transport(resolver=resolver, inner_backend=inner)
    async with Gateway(f"http://rebind.test:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 \(loopback\)"):
            await gw.get("/echo")
    assert inner.dialled == [(PUBLIC, vendor.port)]
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert connects == []  # the loopback vendor was never reached
    assert vendor.hosts == []


async def test_a_redirect_to_the_metadata_service_is_not_followed(
    vendor: Vendor, connects: list[tuple[str, int]]
) -> None:
    resolver = MapResolver(vendor_test=[["127.0.0.1"]])
    transport = guarded_transport(allow=AddressAllowList.parse(LOOPBACK), resolver=resolver)
    async with Gateway(f"http://vendor.test:{vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        with pytest.raises(VendorRejected) as caught:
            await gw.get("/moved")
        assert caught.value.status == 302
        # Following the link by hand is refused too: it is not this gateway's origin.
        with pytest.raises(ConfigurationError, match="not the origin this gateway serves"):
            await gw.get(f"http://169.254.169.254{METADATA_PATH}")
    assert connects == [("127.0.0.1", vendor.port)]
    assert resolver.calls == ["vendor.test"]
    assert vendor.hosts == [f"vendor.test:{vendor.port}"]


@pytest.mark.parametrize(
    "base_url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_GET", "ftp://vendor.test/", "dict://x:11211/"],
)
def test_only_http_base_urls_are_accepted(base_url: str, connects: list[tuple[str, int]]) -> None:
    with pytest.raises(ConfigurationError, match="base URL must be absolute http"):
        Gateway(base_url, policy(), clock=SteppingClock(), transport=guarded_transport())
    assert connects == []


# ---------------------------------------------------------------- TLS


@dataclass
class TlsVendor:
    port: int
    certificate: Path
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        # The cryptography package is not a dependency; the openssl command line makes the cert.
        # In CI (and wherever scripts/test.sh ran) a missing command fails the test.
        service_missing("openssl", "the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_vendor(tmp_path: Path) -> AsyncIterator[TlsVendor]:
    """A bare HTTPS/1.1 server on 127.0.0.1 whose certificate names only vendor.test, recording
    the SNI name of each handshake and the Host header of each request."""
    cert, key = _self_signed(tmp_path, "vendor.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server_names: list[str | None] = []

    def sni(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        server_names.append(server_name)

    context.sni_callback = sni
    hosts: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "host":
                    hosts.append(value.strip())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield TlsVendor(port, cert, server_names, hosts)
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_sends_the_configured_name_as_sni_to_the_pinned_address(
    tls_vendor: TlsVendor, connects: list[tuple[str, int]]
) -> None:
    # The certificate names vendor.test only and is verified, so the handshake succeeding is
    # itself proof that the name, not 127.0.0.1, was checked; the server's record says the same.
    trust = ssl.create_default_context(cafile=str(tls_vendor.certificate))
    resolver = MapResolver(vendor_test=[["127.0.0.1"]])
    transport = guarded_transport(
        allow=AddressAllowList.parse(["127.0.0.0/8"]), resolver=resolver, verify=trust
    )
    async with Gateway(f"https://vendor.test:{tls_vendor.port}", policy(), clock=SteppingClock(),
                       transport=transport) as gw:  # fmt: skip
        response = await gw.get("/status")
    assert response.content == b"ok"
    assert tls_vendor.server_names == ["vendor.test"]
    assert tls_vendor.hosts == [f"vendor.test:{tls_vendor.port}"]
    assert connects == [("127.0.0.1", tls_vendor.port)]
