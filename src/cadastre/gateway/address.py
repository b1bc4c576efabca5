"""No server-side request forgery: a vendor host is resolved once, and only a public address is
connected to.

Vendor base URLs are configuration a tenant may supply, so "http://169.254.169.254/" or a name that
resolves to 10.0.0.5 must not reach the cloud metadata service or the internal network. Checking
the URL's text is not enough: ``2130706433``, ``0x7f.1`` and ``[::ffff:127.0.0.1]`` all reach
loopback, and a name may resolve to a public address when checked and to 127.0.0.1 a moment later
(DNS rebinding). So the check sits at the one place that knows the address actually dialled: the
httpcore network backend. ``GuardedNetworkBackend.connect_tcp`` resolves the host once, judges
every answer with ``refusal``, and connects to the IP it judged, never to the name again.

TLS and HTTP still use the configured name: httpcore passes the origin host to ``start_tls`` as
``server_hostname`` (SNI and certificate check) and the Host header comes from the URL, so pinning
the IP changes nothing a vendor sees.

``AddressAllowList`` lets named exceptions through (simulators on loopback in tests and the demo):
CIDR networks, or exact host names whose every address is then allowed.

Not handled here: proxies (a proxy resolves the vendor host itself, out of our sight, so
``guarded_transport`` takes no proxy argument) and redirects (the gateway never follows them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import httpcore
import httpx

from cadastre.errors import AddressRefused, ConfigurationError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

log = logging.getLogger(__name__)

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network
# httpcore's own alias lives in a private module; this is the same union.
SocketOption: TypeAlias = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

# Metadata services answer credentials to anyone who can reach them, so they are named on their
# own even where a broader rule (link-local, ULA) would refuse them too: the reason then says what
# was at stake.
CLOUD_METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)

# Ranges the stdlib's properties either miss or lump together (``is_private`` covers
# documentation and benchmarking too, and differs between Python releases). First match wins, so
# the more specific ranges come first. Sources: the IANA IPv4 and IPv6 special-purpose registries.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "this network (0.0.0.0/8)"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("198.18.0.0/15", "benchmarking"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing SID"),
        ("fc00::/7", "unique local (ULA)"),
    )
)
_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4
_IPV4_COMPATIBLE = IPv6Network("::/96")  # RFC 4291, deprecated: ::a.b.c.d


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address (``"loopback"``, ``"private"``,
    ``"IPv4-mapped cloud metadata"`` ...), or None when it is one."""
    if isinstance(ip, IPv6Address) and ip.scope_id is not None:
        ip = IPv6Address(int(ip))  # "fe80::1%eth0": the zone does not change what it is
    if ip in CLOUD_METADATA:
        return "cloud metadata"
    # The stdlib is right about these four in both families.
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, IPv6Address):
        if ip.is_site_local:
            return "site-local (deprecated)"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # The packet ends up at the embedded IPv4 address (a dual-stack socket, a NAT64 or
            # 6to4 gateway), so that address is what is judged; the wrapper itself is not
            # refused, or a public host reached through NAT64 would be.
            form, v4 = embedded
            inner = refusal(v4)
            if inner is not None:
                return f"{form} {inner}"
            if form == "IPv4-compatible":
                return "IPv4-compatible (deprecated, not routed)"
            return None
    for network, reason in _SPECIAL:
        if ip in network:
            return reason
    # Backstops, for whatever the table above misses or a later registry adds.
    if isinstance(ip, IPv6Address) and ip not in _IPV6_GLOBAL_UNICAST:
        return "reserved (outside global unicast 2000::/3)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally reachable"
    return None


def _is_metadata(ip: IPAddress) -> bool:
    if ip in CLOUD_METADATA:
        return True
    embedded = _embedded_ipv4(ip) if isinstance(ip, IPv6Address) else None
    return embedded is not None and embedded[1] in CLOUD_METADATA


def _embedded_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    # :: and ::1 are also in ::/96; they were judged before this is reached.
    if ip in _IPV4_COMPATIBLE:
        return "IPv4-compatible", IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


# A host name: LDH labels of 1-63 characters (underscores tolerated, as some internal zones use
# them), not starting or ending with a hyphen.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_MAX_NAME = 253


@dataclass(frozen=True)
class AddressAllowList:
    """Connections let through despite ``refusal``: an address in one of ``networks``, or any
    address of a host named in ``hosts``.

    A host name entry trusts whatever that name resolves to, so it is for names the operator
    controls (a simulator), never for a name a tenant chose. Cloud metadata addresses are refused
    whatever the list says: no vendor or simulator lives there, and they hand out credentials."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AddressAllowList:
        """From settings such as ``["127.0.0.0/8", "::1/128", "sim.local"]``; a bare address is a
        one-address network. Raises ``ConfigurationError`` naming every entry it cannot read."""
        if isinstance(entries, str):
            # A single string would be read character by character: "127.0.0.1" as ten entries.
            raise ConfigurationError(
                f"address allow-list: expected a list of entries, not the string {entries!r}"
            )
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        problems: list[str] = []
        for entry in entries:
            try:
                parsed = _parse_entry(entry)
            except ValueError as error:
                problems.append(f"{entry!r}: {error}")
                continue
            if isinstance(parsed, str):
                hosts.add(parsed)
            elif parsed not in networks:
                networks.append(parsed)
        if problems:
            raise ConfigurationError("address allow-list: " + "; ".join(problems))
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, host: str, ip: IPAddress) -> bool:
        if isinstance(ip, IPv6Address):
            ip = IPv6Address(int(ip)) if ip.scope_id is not None else ip
        if _is_metadata(ip):
            return False
        if _normalise_host(host) in self.hosts:
            return True
        # A mapped address is the IPv4 one on a dual-stack socket: 127.0.0.0/8 covers
        # ::ffff:127.0.0.1 too.
        mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts)

    def beyond(self, ceiling: AddressAllowList) -> list[str]:
        """Entries of this list that ``ceiling`` does not cover: a tenant's connection may only
        narrow what the operator allowed, never widen it."""
        outside = [name for name in sorted(self.hosts) if name not in ceiling.hosts]
        outside.extend(
            str(net)
            for net in self.networks
            if not any(
                net.version == top.version and net.subnet_of(top)  # type: ignore[arg-type]
                for top in ceiling.networks
            )
        )
        return outside


def _parse_entry(entry: object) -> IPNetwork | str:
    if not isinstance(entry, str):
        raise ValueError(f"expected a string, not {type(entry).__name__}")
    text = entry.strip()
    if not text:
        raise ValueError("empty entry")
    if "://" in text:
        raise ValueError("a URL; give the host name or the network only")
    if "/" in text or ":" in text or re.fullmatch(r"[0-9.]+", text):
        try:
            network = ipaddress.ip_network(text)  # strict: "10.0.0.1/8" is a mistake, not 10/8
        except ValueError as error:
            problem = str(error)
        else:
            if network.prefixlen == 0:
                raise ValueError("allows every address, which turns the guard off")
            return network
        if "host bits set" in problem:
            meant = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"host bits set; did you mean {meant}?")
    else:
        problem = ""
    try:
        socket.inet_aton(text)
    except OSError:
        pass
    else:
        # "2130706433", "0x7f000001", "0177.1": legacy numeric forms the resolver reads as an
        # address; written as a network there is no doubt which one is meant.
        raise ValueError("a numeric IPv4 form; write the address as a CIDR network")
    if problem:
        raise ValueError(f"not a CIDR network or address ({problem})")
    if "*" in text:
        raise ValueError("wildcards are not supported; name each host")
    host = _normalise_host(text)
    labels = host.split(".")
    if len(host) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("not a CIDR network, an address or a host name")
    if labels[-1].isdigit():
        raise ValueError("not a host name (its last label is numeric)")
    return host


def _normalise_host(host: str) -> str:
    # DNS names are case-insensitive, and "sim.local." is the same name as "sim.local".
    return host.lower().rstrip(".")


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to, in the order a client should try them. Raises
        ``OSError`` (``socket.gaierror``) when the name does not resolve."""
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), as a plain connect would use. Numeric
    forms (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) come back as the address the OS reads them
    as, and are judged like any other answer."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        answers: list[IPAddress] = []
        for *_, sockaddr in infos:
            # An IP socket address starts with the address text; nothing else is asked for here.
            if not isinstance(sockaddr[0], str):
                continue
            ip = ipaddress.ip_address(sockaddr[0])
            if ip not in answers:
                answers.append(ip)
        return answers


# httpx.AsyncHTTPTransport's default (its own constant is private).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

_SHOWN_REFUSALS = 4  # addresses named in a refusal message; a round-robin name may have dozens


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves once, refuses non-public answers (unless
    ``allow`` lets them through) and hands the inner backend an IP address, not a name."""

    def __init__(
        self,
        allow: AddressAllowList | None = None,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow = allow if allow is not None else AddressAllowList()
        self.resolver: Resolver = resolver if resolver is not None else SystemResolver()
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Failures to resolve are raised as httpcore's connect errors, as the plain backend's
        # are: httpx maps them to ConnectError/ConnectTimeout, which the retry layer knows.
        try:
            async with asyncio.timeout(timeout):
                answers = await self.resolver.resolve(host, port)
        except TimeoutError:  # before OSError: TimeoutError is one
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        except OSError as error:
            raise httpcore.ConnectError(f"resolving {host!r} failed: {error}") from error
        if not answers:
            raise httpcore.ConnectError(f"{host!r} resolved to no address")
        allowed: list[IPAddress] = []
        refused: list[str] = []
        for ip in answers:
            why = None if self.allow.allows(host, ip) else refusal(ip)
            if why is None:
                allowed.append(ip)
            else:
                refused.append(f"{ip} ({why})")
        if not allowed:
            shown = ", ".join(refused[:_SHOWN_REFUSALS])
            more = len(refused) - _SHOWN_REFUSALS
            message = f"host {host!r} resolves only to refused addresses: {shown}" + (
                f" and {more} more" if more > 0 else ""
            )
            log.warning("refused a connection: %s", message)
            raise AddressRefused(message)
        if refused:
            log.warning("host %r: skipped refused addresses %s", host, ", ".join(refused))
        # Only the addresses judged above are dialled, in the resolver's order; the next one is
        # tried when one cannot be reached (no IPv6 route, say), as a plain connect would.
        for ip in allowed[:-1]:
            try:
                return await self._dial(ip, port, timeout, started, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return await self._dial(allowed[-1], port, timeout, started, local_address, socket_options)

    async def _dial(
        self,
        ip: IPAddress,
        port: int,
        budget: float | None,
        started: float,
        local_address: str | None,
        socket_options: Iterable[SocketOption] | None,
    ) -> httpcore.AsyncNetworkStream:
        # The connect timeout covers resolving and every address tried, as it would for a name.
        elapsed = asyncio.get_running_loop().time() - started
        return await self.inner.connect_tcp(
            str(ip),
            port,
            timeout=None if budget is None else max(0.0, budget - elapsed),
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # A Unix socket is a local service by definition; no vendor lives at one.
        raise AddressRefused("connecting to a Unix socket is refused: vendors are reached by TCP")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool dials through a
    ``GuardedNetworkBackend``. Build it with ``guarded_transport``."""

    def __init__(
        self,
        backend: GuardedNetworkBackend,
        *,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
        super().__init__(
            verify=ssl_context,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
        )
        # httpx 0.28 builds its httpcore pool in __init__ and takes no network_backend, so the
        # private ``_pool`` is rebuilt here with the arguments httpx itself passes (without a
        # proxy: httpx/_transports/default.py), plus ``network_backend``. If a future httpx stops
        # building this pool, fail now rather than silently sending unguarded;
        # tests/unit/gateway/test_address.py also compares the two pools field by field.
        if type(getattr(self, "_pool", None)) is not httpcore.AsyncConnectionPool:
            raise RuntimeError(
                "httpx.AsyncHTTPTransport no longer keeps an httpcore.AsyncConnectionPool in "
                "_pool; cadastre.gateway.address must be updated for this httpx version"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            uds=None,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=backend,
        )
        self.backend = backend


def guarded_transport(
    *,
    allow: AddressAllowList | None = None,
    resolver: Resolver | None = None,
    inner_backend: httpcore.AsyncNetworkBackend | None = None,
    **options: Any,
) -> GuardedTransport:
    """The innermost transport for vendor calls: ``httpx.AsyncHTTPTransport`` with the same
    keyword arguments (``options``: no ``proxy``, no ``uds``; see ``GuardedTransport``), refusing
    non-public addresses unless ``allow`` lets them through. ``resolver`` and ``inner_backend``
    are for tests."""
    return GuardedTransport(GuardedNetworkBackend(allow, resolver, inner_backend), **options)
