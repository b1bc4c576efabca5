"""Where a subscription may point (RELIABILITY.md promise 16, at creation time).

A subscription URL is typed by a tenant, so it is judged like a vendor URL: https, or http to a
host the operator allowed (``CADASTRE_GATEWAY_ALLOW_HOSTS``: a simulator, a service on the private
network); no user name or password in it (it would be stored and shown in the clear); and no
private, reserved or metadata address, whether written out (``127.0.0.1``, ``[::ffff:127.0.0.1]``,
``2130706433``, ``0x7f.1``) or what the name resolves to now. ``file:``, ``gopher:`` and every
other scheme are refused outright.

This is the early answer, for the person creating the subscription. The guarantee is the
gateway's address guard (``cadastre.gateway.address``), which judges the address actually dialled
on every attempt, so a name that resolves elsewhere later (DNS rebinding) is refused then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cadastre.errors import ConfigurationError
from cadastre.gateway import origin
from cadastre.gateway.address import SystemResolver, refusal

if TYPE_CHECKING:
    from cadastre.gateway import AddressAllowList
    from cadastre.gateway.address import IPAddress, Resolver

MAX_URL = 2000
RESOLVE_SECONDS = 3.0


def _refused(why: str) -> ConfigurationError:
    return ConfigurationError(f"subscription URL refused: {why}")


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` writes out, in any form a resolver reads as one (``2130706433``,
    ``0x7f.1`` and ``0177.0.0.1`` are 127.0.0.1), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def check_url(
    url: str,
    allow: AddressAllowList,
    *,
    resolver: Resolver | None = None,
    resolve_seconds: float = RESOLVE_SECONDS,
) -> str:
    """``url`` if a subscription may point there; ``ConfigurationError`` saying why not. A name
    that does not resolve (yet) is let through: the guard judges it at every attempt."""
    text = url.strip()
    if not text or len(text) > MAX_URL:
        raise _refused(f"a URL of 1 to {MAX_URL} characters is needed")
    if any(c <= " " or c == "\x7f" for c in text):
        # urlsplit drops tabs and newlines that the sender's HTTP client refuses: such a URL
        # would pass here and then fail every attempt
        raise _refused("a control character or space in it (percent-encode it)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _refused("it cannot be parsed as a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise _refused(f"the scheme {scheme or '(none)'!r} is not https or http")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refused("a user name or password in the URL would be stored in the clear")
    if parts.fragment:
        raise _refused("a fragment (#...) is never sent; leave it out")
    host = (parts.hostname or "").rstrip(".")
    if not host or (port is not None and not 0 < port < 65536):
        raise _refused("it names no host, or a port outside 1-65535")
    ip = literal_address(host)
    named = ip is None
    if ip is not None:
        why = None if allow.allows(host, ip) else refusal(ip)
        if why is not None:
            raise _refused(f"{host} is a {why} address")
    elif _loopback_name(host) and not allow.allows(host, ipaddress.ip_address("127.0.0.1")):
        raise _refused(f"{host} is a loopback name")
    if scheme == "http" and not _operator_allows(allow, host, ip):
        raise _refused(
            "plain http is only for hosts the operator allows (CADASTRE_GATEWAY_ALLOW_HOSTS)"
        )
    try:
        origin(text)  # what the sender's HTTP client makes of it, IDNA included
    except Exception:  # noqa: BLE001 - httpx.InvalidURL, idna's errors (httpx is the gateway's)
        # a URL the sender cannot send would fail every attempt: refused here instead
        raise _refused("it cannot be parsed as a URL") from None
    if named:
        port = port or (443 if scheme == "https" else 80)
        await _check_answers(host, port, allow, resolver or SystemResolver(), resolve_seconds)
    return text


def _loopback_name(host: str) -> bool:
    # RFC 6761: localhost and every name under it are loopback, whatever a resolver says.
    return host.lower() == "localhost" or host.lower().endswith(".localhost")


def _operator_allows(allow: AddressAllowList, host: str, ip: IPAddress | None) -> bool:
    if ip is not None:
        return allow.allows(host, ip)
    return host.lower() in allow.hosts


async def _check_answers(
    host: str, port: int, allow: AddressAllowList, resolver: Resolver, seconds: float
) -> None:
    try:
        async with asyncio.timeout(seconds):
            answers = await resolver.resolve(host, port)
    except (OSError, TimeoutError):
        return  # not resolvable now; the guard decides at each attempt
    judged = [(ip, None if allow.allows(host, ip) else refusal(ip)) for ip in answers]
    if judged and all(why is not None for _, why in judged):
        shown = ", ".join(f"{ip} ({why})" for ip, why in judged[:4])
        raise _refused(f"{host} resolves only to refused addresses: {shown}")
