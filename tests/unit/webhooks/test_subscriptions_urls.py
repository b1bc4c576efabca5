"""RELIABILITY.md promise 16 at creation time: a subscription URL that names a private, reserved
or metadata address (written out in any form, or resolving only to such addresses), another scheme
than http(s), plain http to a host the operator did not allow, or a user name and password, is
refused when the subscription is created. The connect-time guard is tested against a real socket
in tests/integration/webhooks_out/test_addresses.py."""

from __future__ import annotations

import ipaddress

import pytest

from cadastre.errors import ConfigurationError
from cadastre.gateway import AddressAllowList
from cadastre.gateway.address import IPAddress
from cadastre.webhooks.out_urls import check_url, literal_address

NONE = AddressAllowList.parse([])
LOOPBACK = AddressAllowList.parse(["127.0.0.0/8", "sim.internal"])


class Answers:
    """A resolver that answers what it is told, and counts what it was asked."""

    def __init__(self, *addresses: str, fail: bool = False) -> None:
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self.fail = fail
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if self.fail:
            raise OSError("Name or service not known")
        return list(self.addresses)


PUBLIC = Answers("93.184.216.34")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://127.1/hooks", "loopback"),
        ("https://2130706433/hooks", "loopback"),  # 127.0.0.1 as one number
        ("https://0x7f.1/hooks", "loopback"),
        ("https://0177.0.0.1/hooks", "loopback"),
        ("https://[::1]/hooks", "loopback"),
        ("https://[::ffff:127.0.0.1]/hooks", "IPv4-mapped loopback"),
        ("https://[::ffff:7f00:1]/hooks", "IPv4-mapped loopback"),
        ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("https://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("https://[64:ff9b::a9fe:a9fe]/", "NAT64 cloud metadata"),
        ("https://[2002:a9fe:a9fe::1]/", "6to4 cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("https://10.0.0.5/hooks", "private"),
        ("https://192.168.1.1/hooks", "private"),
        ("https://100.64.0.1/hooks", "carrier-grade NAT"),
        ("https://0.0.0.0/hooks", "unspecified"),
        ("https://[fe80::1]/hooks", "link-local"),
        ("https://[fc00::1]/hooks", "unique local"),
        ("https://localhost/hooks", "loopback name"),
        ("https://api.localhost/hooks", "loopback name"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com:70/_hello", "scheme 'gopher'"),
        ("ftp://example.com/", "scheme 'ftp'"),
        ("//example.com/hooks", "scheme '(none)'"),
        ("http://example.com/hooks", "plain http"),
        ("https://user:pass@example.com/hooks", "user name or password"),
        ("https://example.com@127.0.0.1/hooks", "user name or password"),
        ("https://example.com/hooks#frag", "fragment"),
        ("https://example.com:99999/hooks", "parsed"),
        # what the sender's HTTP client cannot send would fail every attempt
        ("https://example.com/in\x00", "control character or space"),
        ("https://example.com\t/hooks", "control character or space"),
        ("https://exa mple.com/hooks", "control character or space"),
        ("https://xn--zz.com/hooks", "parsed"),
        ("https:///hooks", "no host"),
        ("", "1 to 2000"),
    ],
)
async def test_refused_at_creation(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match="subscription URL refused") as refused:
        await check_url(url, NONE, resolver=PUBLIC)
    assert why in str(refused.value)


async def test_a_name_that_resolves_only_to_private_addresses_is_refused() -> None:
    resolver = Answers("10.1.2.3", "::ffff:169.254.169.254")
    with pytest.raises(ConfigurationError, match="resolves only to refused addresses"):
        await check_url("https://rebind.example.com/hooks", NONE, resolver=resolver)
    assert resolver.asked == ["rebind.example.com"]
    # one public answer among them: the guard skips the private ones at connect time
    mixed = Answers("10.1.2.3", "93.184.216.34")
    assert await check_url("https://mixed.example.com/", NONE, resolver=mixed)


async def test_public_and_unresolvable_names_pass() -> None:
    url = "https://hooks.example.com:8443/in?x=1"
    assert await check_url(url, NONE, resolver=PUBLIC) == url
    # not resolvable now: the guard decides at each attempt
    assert await check_url(url, NONE, resolver=Answers(fail=True)) == url
    assert await check_url("https://93.184.216.34/in", NONE, resolver=PUBLIC)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hooks", "https://127.0.0.1/hooks", "http://sim.internal/hooks",
     "https://[::ffff:127.0.0.1]:9/hooks"],
)  # fmt: skip
async def test_hosts_the_operator_allows_pass_plain_http_too(url: str) -> None:
    assert await check_url(url, LOOPBACK, resolver=Answers("127.0.0.1")) == url


async def test_metadata_is_refused_even_when_its_network_is_allowed() -> None:
    allow = AddressAllowList.parse(["169.254.0.0/16"])
    with pytest.raises(ConfigurationError, match="cloud metadata"):
        await check_url("https://169.254.169.254/", allow, resolver=PUBLIC)
    assert await check_url("https://169.254.10.10/", allow, resolver=PUBLIC)


def test_literal_addresses_in_every_form_a_resolver_reads() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    assert [literal_address(h) for h in ("127.0.0.1", "2130706433", "0x7f.1", "0177.1")] == [
        loopback
    ] * 4
    assert literal_address("example.com") is None
    assert literal_address("::1") == ipaddress.ip_address("::1")
