"""The gateways deliveries leave through: one per subscription and URL, closed when their
subscription is gone or moved; the no-retry path sends the exact bytes given, never follows a
redirect, and reads at most ``max_body`` of an answer."""

from __future__ import annotations

import httpx

from cadastre.gateway import Gateway, VendorPolicy
from cadastre.ports import Subscription, SubscriptionStatus
from cadastre.testing import EPOCH, FakeClock
from cadastre.webhooks.out_gateways import SubscriberGateways


def subscription(id: str, url: str) -> Subscription:
    return Subscription(id, url, ("cadastre.listing.*",), "", SubscriptionStatus.ACTIVE, "",
                        None, f"subscription-{id}", EPOCH, EPOCH)  # fmt: skip


async def test_one_gateway_per_subscription_and_url() -> None:
    gateways = SubscriberGateways(FakeClock(), timeout=2.0)
    first = gateways.get("acme", subscription("s1", "https://a.example.com/in"))
    assert gateways.get("acme", subscription("s1", "https://a.example.com/in")) is first
    moved = gateways.get("acme", subscription("s1", "https://b.example.com/in"))
    other = gateways.get("globex", subscription("s1", "https://a.example.com/in"))
    assert len({id(first), id(moved), id(other)}) == 3
    await gateways.keep("acme", [subscription("s1", "https://b.example.com/in")])
    assert gateways.get("acme", subscription("s1", "https://b.example.com/in")) is moved
    assert gateways.get("globex", subscription("s1", "https://a.example.com/in")) is other
    assert gateways.get("acme", subscription("s1", "https://a.example.com/in")) is not first
    await gateways.aclose()


async def test_the_no_retry_path_sends_the_bytes_and_caps_the_answer() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "https://a.example.com/elsewhere"})
        return httpx.Response(500, content=b"x" * 1_000_000)

    gateway = Gateway(
        "https://a.example.com/in", VendorPolicy(vendor="subscriber", max_attempts=1),
        clock=FakeClock(), transport=httpx.MockTransport(answer),
    )  # fmt: skip
    body = b'{"a": 1,  "b": "\\u00e9"}'  # not what a JSON encoder would write
    reply = await gateway.token_endpoint.send(
        "POST", "https://a.example.com/in", content=body,
        headers={"content-type": "application/json"}, max_body=1000,
    )  # fmt: skip
    assert (reply.status, len(reply.body)) == (500, 1000)
    moved = await gateway.token_endpoint.send("POST", "https://a.example.com/moved", content=body)
    assert moved.status == 302  # answered as it is, not followed
    assert [r.url.path for r in seen] == ["/in", "/moved"]
    assert seen[0].content == body
    assert seen[0].headers["content-type"] == "application/json"
    await gateway.aclose()


class Endless(httpx.AsyncByteStream):
    """An answer that would never end: 10 kB chunks, counted as they are pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self):
        while True:
            self.pulled += 1
            yield b"y" * 10_000


async def test_a_streamed_answer_is_read_no_further_than_the_cap() -> None:
    endless = Endless()
    gateway = Gateway(
        "https://a.example.com/in", VendorPolicy(vendor="subscriber", max_attempts=1),
        clock=FakeClock(),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=endless)),
    )  # fmt: skip
    reply = await gateway.token_endpoint.send("POST", "https://a.example.com/in", content=b"{}",
                                              max_body=25_000)  # fmt: skip
    assert (reply.status, len(reply.body)) == (200, 25_000)
    assert endless.pulled == 3
    await gateway.aclose()
