"""The SSRF guard without sockets: ``refusal`` over the special-purpose ranges, the allow-list, and
``GuardedNetworkBackend`` / ``guarded_transport`` with a scripted resolver and an inner backend that
records what it is asked to dial (real sockets: tests/integration/gateway/test_ssrf.py)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from ipaddress import ip_address, ip_network

import httpcore
import httpx
import pytest

from cadastre.errors import AddressRefused, ConfigurationError, VendorError
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.address import (
    AddressAllowList,
    GuardedNetworkBackend,
    GuardedTransport,
    IPAddress,
    guarded_transport,
    refusal,
)

PUBLIC = "93.184.215.14"  # a public unicast address; nothing here really connects to it

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.0.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT (shared address space)"),
    ("100.127.255.254", "carrier-grade NAT (shared address space)"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address judged, nothing binds
    ("0.1.2.3", "this network (0.0.0.0/8)"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.88.99.1", "6to4 relay anycast (deprecated)"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local"),
    ("fc00::1", "unique local (ULA)"),
    ("fd12:3456::1", "unique local (ULA)"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fec0::1", "site-local (deprecated)"),
    ("ff02::1", "multicast"),
    ("ff05::1:3", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:10::1", "IETF protocol assignment"),
    ("5f00::1", "segment routing SID"),
    ("4000::1", "reserved (outside global unicast 2000::/3)"),
    # IPv4 inside IPv6: the embedded address is what the packet reaches
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:7f00:1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
    ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::169.254.169.254", "IPv4-compatible cloud metadata"),
    ("::8.8.8.8", "IPv4-compatible (deprecated, not routed)"),
    ("::ffff:0:7f00:1", "IPv4-translated"),
    ("64:ff9b::7f00:1", "NAT64 loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 cloud metadata"),
    ("64:ff9b::a00:1", "NAT64 private"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 loopback"),
    ("2002:a9fe:a9fe::", "6to4 cloud metadata"),
    ("2002:c0a8:101::1", "6to4 private"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    PUBLIC,
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above it
    "172.32.0.1",  # just above 172.16/12
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808",  # NAT64 of a public IPv4
    "::ffff:8.8.8.8",  # mapped public IPv4: a dual-stack socket reaches 8.8.8.8
    "2002:808:808::1",  # 6to4 of a public IPv4
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert refusal(ip_address(address)) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_unicast_addresses_pass(address: str) -> None:
    assert refusal(ip_address(address)) is None


# ---------------------------------------------------------------- allow-list


def test_allow_list_reads_networks_addresses_and_host_names() -> None:
    allow = AddressAllowList.parse([" 127.0.0.0/8", "::1/128", "Sim.Local.", "10.1.2.3"])
    assert allow.networks == (
        ip_network("127.0.0.0/8"),
        ip_network("::1/128"),
        ip_network("10.1.2.3/32"),
    )
    assert allow.hosts == frozenset({"sim.local"})
    assert allow.allows("anything", ip_address("127.0.0.9"))
    assert allow.allows("anything", ip_address("::ffff:127.0.0.9"))  # mapped: the same socket
    assert allow.allows("anything", ip_address("10.1.2.3"))
    assert not allow.allows("anything", ip_address("10.1.2.4"))
    assert not allow.allows("anything", ip_address("::2"))
    assert allow.allows("SIM.local.", ip_address("10.9.9.9"))  # a name trusts its answers
    assert not allow.allows("sim.local.evil", ip_address("10.0.0.1"))
    assert not AddressAllowList()
    assert allow


@pytest.mark.parametrize(
    "metadata", ["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "100.100.100.200"]
)
def test_no_allow_list_entry_opens_the_metadata_service(metadata: str) -> None:
    allow = AddressAllowList.parse(["169.254.0.0/16", "100.64.0.0/10", "fd00::/8", "meta.test"])
    assert not allow.allows("meta.test", ip_address(metadata))
    assert allow.allows("meta.test", ip_address("169.254.1.1"))  # the rest of the list holds


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "empty entry"),
        ("10.0.0.1/8", r"host bits set; did you mean 10\.0\.0\.0/8\?"),
        ("300.1.1.1", "not a CIDR network or address"),
        ("fe80::/129", "not a CIDR network or address"),
        ("2130706433", "a numeric IPv4 form"),
        ("0x7f000001", "a numeric IPv4 form"),
        ("0177.0.0.1", "a numeric IPv4 form"),
        ("0x7f.1", "a numeric IPv4 form"),
        ("*.vendor.example", "wildcards are not supported"),
        ("http://sim.local", "a URL"),
        ("sim local", "not a CIDR network, an address or a host name"),
        ("-sim.local", "not a CIDR network, an address or a host name"),
        ("a..b", "not a CIDR network, an address or a host name"),
        ("x" * 64 + ".test", "not a CIDR network, an address or a host name"),
        ("vendor.123", "its last label is numeric"),
        ("0.0.0.0/0", "turns the guard off"),
        ("::/0", "turns the guard off"),
    ],
)
def test_bad_allow_list_entries_are_configuration_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        AddressAllowList.parse(["127.0.0.0/8", entry])
    assert repr(entry) in str(caught.value)  # the entry at fault is named


def test_every_bad_entry_is_named_at_once_and_a_bare_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"'bad one'.*'10\.0\.0\.1/8'"):
        AddressAllowList.parse(["bad one", "10.0.0.1/8"])
    with pytest.raises(ConfigurationError, match="a list of entries"):
        AddressAllowList.parse("127.0.0.1")


# ---------------------------------------------------------------- doubles


class Resolver:
    """Answers from a script: one list per call (the last one repeats), or an exception."""

    def __init__(self, *answers: Sequence[str] | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return [ip_address(a) for a in answer]


class SlowResolver:
    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        await asyncio.sleep(10)
        return [ip_address(PUBLIC)]


class FakeStream(httpcore.AsyncNetworkStream):
    """Answers one canned HTTP/1.1 response; records what was written and the TLS handshake."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.written = b""
        self.server_hostname: str | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        chunk, self.answer = self.answer[:max_bytes], self.answer[max_bytes:]
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.written += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.server_hostname = server_hostname
        return self

    def get_extra_info(self, info: str) -> object:
        return None


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Dialler(httpcore.AsyncNetworkBackend):
    """Records every connect it is asked for; ``refuse`` lists addresses that fail to connect,
    ``answer`` is what the others are served (None: every connect fails)."""

    def __init__(self, answer: bytes | None = OK, refuse: Iterable[str] = ()) -> None:
        self.answer = answer
        self.refuse = set(refuse)
        self.connects: list[tuple[str, int]] = []
        self.timeouts: list[float | None] = []
        self.streams: list[FakeStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[object] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        self.timeouts.append(timeout)
        if self.answer is None or host in self.refuse:
            raise httpcore.ConnectError(f"test: no connection to {host}")
        stream = FakeStream(self.answer)
        self.streams.append(stream)
        return stream

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def backend(
    resolver: Resolver, dialler: Dialler, allow: Sequence[str] = ()
) -> GuardedNetworkBackend:
    return GuardedNetworkBackend(AddressAllowList.parse(allow), resolver, dialler)


# ---------------------------------------------------------------- the backend


async def test_a_refused_host_is_never_dialled_and_the_error_says_why() -> None:
    resolver, dialler = Resolver(["10.0.0.7", "169.254.169.254"]), Dialler()
    with pytest.raises(AddressRefused) as caught:
        await backend(resolver, dialler).connect_tcp("vendor.test", 443, timeout=5)
    assert str(caught.value) == (
        "host 'vendor.test' resolves only to refused addresses: 10.0.0.7 (private), "
        "169.254.169.254 (cloud metadata)"
    )
    assert resolver.calls == [("vendor.test", 443)]
    assert dialler.connects == []


async def test_the_first_allowed_answer_is_dialled_by_address_not_by_name() -> None:
    resolver, dialler = Resolver(["127.0.0.1", PUBLIC, "8.8.8.8"]), Dialler()
    await backend(resolver, dialler).connect_tcp("vendor.test", 443, timeout=5)
    assert dialler.connects == [(PUBLIC, 443)]


async def test_an_unreachable_allowed_address_falls_back_to_the_next_judged_one() -> None:
    resolver = Resolver(["2606:4700:4700::1111", "10.0.0.1", PUBLIC])
    dialler = Dialler(refuse={"2606:4700:4700::1111"})
    await backend(resolver, dialler).connect_tcp("vendor.test", 80, timeout=5)
    assert dialler.connects == [("2606:4700:4700::1111", 80), (PUBLIC, 80)]
    assert len(resolver.calls) == 1  # the fallback does not ask the resolver again


async def test_when_every_allowed_address_fails_the_last_connect_error_is_raised() -> None:
    dialler = Dialler(answer=None)
    with pytest.raises(httpcore.ConnectError, match=f"no connection to {PUBLIC}"):
        await backend(Resolver(["8.8.8.8", PUBLIC]), dialler).connect_tcp("v.test", 80)
    assert dialler.connects == [("8.8.8.8", 80), (PUBLIC, 80)]


async def test_a_scoped_refusal_counts_too() -> None:
    with pytest.raises(AddressRefused, match="IPv4-mapped loopback"):
        await backend(Resolver(["::ffff:127.0.0.1"]), Dialler()).connect_tcp("v.test", 80)


async def test_a_long_refusal_names_a_few_addresses() -> None:
    many = [f"10.0.0.{n}" for n in range(1, 10)]
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.4 \(private\) and 5 more$"):
        await backend(Resolver(many), Dialler()).connect_tcp("v.test", 80)


async def test_the_allow_list_lets_networks_and_named_hosts_through() -> None:
    dialler = Dialler()
    await backend(Resolver(["127.0.0.1"]), dialler, ["127.0.0.0/8"]).connect_tcp("v.test", 80)
    await backend(Resolver(["10.9.9.9"]), dialler, ["sim.local"]).connect_tcp("SIM.local", 81)
    assert dialler.connects == [("127.0.0.1", 80), ("10.9.9.9", 81)]
    with pytest.raises(AddressRefused):  # the name is allowed, not the address for other names
        await backend(Resolver(["10.9.9.9"]), dialler, ["sim.local"]).connect_tcp("x.test", 80)


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    resolver = Resolver(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(httpcore.ConnectError, match=r"resolving 'nx\.test' failed"):
        await backend(resolver, Dialler()).connect_tcp("nx.test", 80)
    with pytest.raises(httpcore.ConnectError, match="resolved to no address"):
        await backend(Resolver([]), Dialler()).connect_tcp("nx.test", 80)


async def test_resolving_counts_against_the_connect_timeout() -> None:
    dialler = Dialler()
    guard = GuardedNetworkBackend(None, SlowResolver(), dialler)
    with pytest.raises(httpcore.ConnectTimeout, match=r"resolving 'slow\.test' timed out"):
        await guard.connect_tcp("slow.test", 80, timeout=0.01)
    assert dialler.connects == []
    await backend(Resolver([PUBLIC]), dialler).connect_tcp("v.test", 80, timeout=3.0)
    assert dialler.timeouts[0] is not None
    assert 0 < dialler.timeouts[0] <= 3.0


async def test_unix_sockets_are_refused() -> None:
    dialler = Dialler()
    with pytest.raises(AddressRefused, match="Unix socket"):
        await backend(Resolver([PUBLIC]), dialler).connect_unix_socket("/run/docker.sock")
    assert dialler.connects == []


# ---------------------------------------------------------------- the transport


async def test_tls_and_the_host_header_keep_the_configured_name() -> None:
    resolver, dialler = Resolver([PUBLIC]), Dialler()
    async with guarded_transport(resolver=resolver, inner_backend=dialler) as transport:
        response = await transport.handle_async_request(
            httpx.Request("GET", "https://vendor.test/odata/Property?$top=1")
        )
        assert await response.aread() == b"ok"
    assert dialler.connects == [(PUBLIC, 443)]
    (stream,) = dialler.streams
    assert stream.server_hostname == "vendor.test"  # SNI and the certificate check
    head = stream.written.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"GET /odata/Property?$top=1 HTTP/1.1"
    assert b"Host: vendor.test" in head


async def test_a_refusal_leaves_the_transport_as_address_refused_not_an_httpx_error() -> None:
    resolver, dialler = Resolver(["127.0.0.1"]), Dialler()
    async with guarded_transport(resolver=resolver, inner_backend=dialler) as transport:
        with pytest.raises(AddressRefused) as caught:
            await transport.handle_async_request(httpx.Request("GET", "http://vendor.test/x"))
    assert not isinstance(caught.value, httpx.HTTPError)
    assert isinstance(caught.value, VendorError)
    assert dialler.connects == []


async def test_the_gateway_raises_address_refused_once_and_never_retries_it(clock) -> None:
    resolver, dialler = Resolver(["169.254.169.254"]), Dialler()
    transport = guarded_transport(resolver=resolver, inner_backend=dialler)
    policy = VendorPolicy(vendor="demo", max_attempts=5)
    async with Gateway("http://vendor.test/odata", policy, clock=clock,
                       transport=transport) as gw:  # fmt: skip
        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254 \(cloud metadata\)") as e:
            await gw.get("Property", params={"secret": "canary-query-7781"})
        with pytest.raises(AddressRefused):
            await gw.request("POST", "Property", json={}, headers={"Idempotency-Key": "k"})
    assert "canary-query-7781" not in str(e.value)
    assert resolver.calls == [("vendor.test", 80)] * 2  # one resolve per call: no retry
    assert dialler.connects == []
    assert clock.sleeps == []


async def test_dns_rebinding_cannot_move_a_connection_after_the_check(clock) -> None:
    # Public when asked first, loopback after: the pinned public address is the only one dialled,
    # and the next connection (the retry after the refused connect) is judged afresh.
    resolver, dialler = Resolver([PUBLIC], ["127.0.0.1"]), Dialler(answer=None)
    transport = guarded_transport(resolver=resolver, inner_backend=dialler)
    async with Gateway("http://rebind.test", VendorPolicy(vendor="demo"), clock=clock,
                       transport=transport) as gw:  # fmt: skip
        with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 \(loopback\)"):
            await gw.get("/")
    assert dialler.connects == [(PUBLIC, 80)]
    assert len(resolver.calls) == 2


async def test_limits_size_the_pool() -> None:
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=1, keepalive_expiry=9.0)
    transport = guarded_transport(limits=limits)
    pool = transport._pool
    assert (pool._max_connections, pool._max_keepalive_connections, pool._keepalive_expiry) == (
        3, 1, 9.0
    )  # fmt: skip
    await transport.aclose()


# ---------------------------------------------------------------- the httpx internal it relies on

# Every argument httpx.AsyncHTTPTransport takes, as GuardedTransport knows them. A new one in a
# later httpx must be looked at: it may configure the pool GuardedTransport rebuilds.
HTTPX_TRANSPORT_ARGUMENTS = {
    "verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "uds", "local_address",
    "retries", "socket_options",
}  # fmt: skip
# Pool state that is not configuration: each pool has its own.
_POOL_STATE = {"_network_backend", "_connections", "_requests", "_optional_thread_lock"}


def test_httpx_transport_arguments_are_the_ones_guarded_transport_replicates() -> None:
    parameters = set(inspect.signature(httpx.AsyncHTTPTransport.__init__).parameters) - {"self"}
    assert parameters == HTTPX_TRANSPORT_ARGUMENTS, (
        "httpx.AsyncHTTPTransport's arguments changed: update GuardedTransport in "
        "cadastre/gateway/address.py, which rebuilds httpx's private _pool"
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "http2": True,
            "limits": httpx.Limits(
                max_connections=7, max_keepalive_connections=2, keepalive_expiry=1.5
            ),
            "local_address": "0.0.0.0",  # noqa: S104 - the source address; nothing binds
            "retries": 2,
            "socket_options": [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
            "trust_env": False,
        },
    ],
)
async def test_the_rebuilt_pool_is_httpxs_own_but_for_the_network_backend(
    options: dict[str, object],
) -> None:
    context = ssl.create_default_context()
    reference = httpx.AsyncHTTPTransport(verify=context, **options)  # type: ignore[arg-type]
    guarded = guarded_transport(verify=context, **options)  # type: ignore[arg-type]
    assert type(guarded._pool) is type(reference._pool) is httpcore.AsyncConnectionPool, (
        "httpx no longer keeps an httpcore.AsyncConnectionPool in AsyncHTTPTransport._pool"
    )
    ours = {k: v for k, v in vars(guarded._pool).items() if k not in _POOL_STATE}
    theirs = {k: v for k, v in vars(reference._pool).items() if k not in _POOL_STATE}
    assert ours == theirs, "httpx now configures its pool differently: update GuardedTransport"
    assert ours["_ssl_context"] is context
    assert isinstance(guarded._pool._network_backend, GuardedNetworkBackend)
    assert guarded._pool._network_backend is guarded.backend
    await reference.aclose()
    await guarded.aclose()


def test_a_transport_without_the_expected_pool_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real: Callable[..., None] = httpx.AsyncHTTPTransport.__init__

    def without_pool(self: httpx.AsyncHTTPTransport, **kwargs: object) -> None:
        real(self, **kwargs)
        del self._pool  # as if a later httpx kept its pool elsewhere

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "__init__", without_pool)
    with pytest.raises(RuntimeError, match=r"no longer keeps an httpcore\.AsyncConnectionPool"):
        guarded_transport()


def test_guarded_transport_is_an_httpx_transport() -> None:
    assert issubclass(GuardedTransport, httpx.AsyncHTTPTransport)
