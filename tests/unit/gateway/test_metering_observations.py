"""Every attempt becomes a ``CallObservation``: outcome, status or failure kind, latency on the
clock, the endpoint with ids replaced, an error's fingerprint and redacted sample (its body
streamed through untouched) and a JSON answer's shape."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest

from cadastre.errors import VendorRejected, VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.controls import Guards
from cadastre.gateway.metering import MeteringTransport
from cadastre.observe import Observations, error_fingerprint, shape_of
from cadastre.ports import MinuteRollup
from cadastre.testing import FakeClock

from .conftest import CANARY_SECRET

POLICY = VendorPolicy(vendor="demo", max_attempts=3)


def drained(observations: Observations) -> MinuteRollup:
    (rollup,) = observations.drain()["acme"]
    return rollup


def gateway(clock: FakeClock, observations: Observations, handler: object) -> Gateway:
    return Gateway(
        "https://vendor.test", POLICY, clock=clock, connection="austin-mls",
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        guards=Guards(tenant="acme"), observations=observations,
    )  # fmt: skip


async def test_attempts_statuses_errors_and_shapes_are_observed(clock: FakeClock) -> None:
    error = b'{"error": "busy", "request": "8f3e2a1b9c", "client_secret": "%s"}' % (
        CANARY_SECRET.encode()
    )
    page = {"value": [{"ListingKey": "L1", "ListPrice": 1}], "@odata.nextLink": "x"}

    def answer(request: httpx.Request) -> httpx.Response:
        clock.advance(0.25)
        if len(seen) < 2:
            seen.append(request)
            return httpx.Response(503, content=error)
        return httpx.Response(200, json=page)

    seen: list[httpx.Request] = []
    observations = Observations(clock)
    async with gateway(clock, observations, answer) as vendor:
        assert await vendor.get_json("/odata/Property('L1')") == page
    rollup = drained(observations)
    assert (rollup.connection, rollup.vendor) == ("austin-mls", "demo")
    assert rollup.calls == {"retry": 2, "success": 1}
    assert rollup.statuses == {"503": 2, "200": 1}
    assert rollup.latency_sum == pytest.approx(0.75)
    ((fp, entry),) = rollup.errors.items()
    assert (fp, entry["count"], entry["status"]) == (error_fingerprint("503", error)[0], 2, "503")
    assert "busy" in entry["sample"]
    assert CANARY_SECRET not in repr(rollup)
    ((shape_fp, shape),) = rollup.shapes.items()
    assert shape_fp == shape_of(page)[0]
    assert shape == {"count": 1, "endpoint": "GET /odata/Property({id})",
                     "keys": shape_of(page)[1]}  # fmt: skip


async def test_failures_without_an_answer_are_named_by_kind(clock: FakeClock) -> None:
    failures = iter([
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.ReadError("reset"),
        httpx.RemoteProtocolError("garbage"),
    ])  # fmt: skip

    def fail(request: httpx.Request) -> httpx.Response:
        raise next(failures)

    observations = Observations(clock)
    meter = MeteringTransport(httpx.MockTransport(fail), None, POLICY, "c", clock,
                              observations=observations, tenant="acme")  # fmt: skip
    for _ in range(4):
        with pytest.raises(httpx.HTTPError):
            await meter.handle_async_request(httpx.Request("POST", "https://vendor.test/v2/x/42"))
    rollup = drained(observations)
    assert rollup.statuses == {"connect_error": 1, "timeout": 1, "reset": 1, "protocol_error": 1}
    assert rollup.calls == {"retry": 4}
    assert rollup.errors == {}


class Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_a_streamed_error_body_passes_whole_and_its_head_is_kept(clock: FakeClock) -> None:
    body = [b"maintenance until 10:00; request 77aa01ff42 " + b"x" * 5000, b"y" * 100_000]
    stream = Chunks(*body)
    observations = Observations(clock)
    meter = MeteringTransport(
        httpx.MockTransport(lambda r: httpx.Response(500, stream=stream)), None, POLICY, "c",
        clock, observations=observations, tenant="acme",
    )  # fmt: skip
    response = await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    assert observations.pending() == 0  # recorded once the body has passed
    assert await response.aread() == b"".join(body)  # the caller still gets all of it
    assert stream.closed
    rollup = drained(observations)
    ((fp, entry),) = rollup.errors.items()
    assert entry["sample"].startswith("maintenance until 10:00")
    assert fp == error_fingerprint("500", body[0][:4096])[0]


async def test_an_error_body_closed_unread_is_still_observed(clock: FakeClock) -> None:
    compressed = gzip.compress(b'{"error": "upstream timeout"}')
    observations = Observations(clock)
    meter = MeteringTransport(
        httpx.MockTransport(lambda r: httpx.Response(
            504, headers={"Content-Encoding": "gzip"}, stream=Chunks(compressed))),
        None, POLICY, "c", clock, observations=observations, tenant="acme",
    )  # fmt: skip
    response = await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    await response.aclose()  # never read: the head is empty, the call still counts
    rollup = drained(observations)
    assert rollup.statuses == {"504": 1}
    ((_, entry),) = rollup.errors.items()
    assert entry["sample"] == ""
    # read, a gzip body's head is inflated before it is fingerprinted
    meter = MeteringTransport(
        httpx.MockTransport(lambda r: httpx.Response(
            504, headers={"Content-Encoding": "gzip"}, stream=Chunks(compressed))),
        None, POLICY, "c", clock, observations=observations, tenant="acme",
    )  # fmt: skip
    response = await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    assert await response.aread() == b'{"error": "upstream timeout"}'
    ((_, entry),) = drained(observations).errors.items()
    assert entry["sample"] == '{"error": "upstream timeout"}'


async def test_a_refused_call_is_observed_with_its_error(clock: FakeClock) -> None:
    observations = Observations(clock)
    answers = {"/gone": httpx.Response(404, text="no listing 123"),
               "/down": httpx.Response(500, text="oops")}  # fmt: skip
    async with gateway(clock, observations, lambda r: answers[r.url.path]) as vendor:
        with pytest.raises(VendorRejected):
            await vendor.get("/gone")
        with pytest.raises(VendorUnavailable):
            await vendor.get("/down")
    rollup = drained(observations)
    assert rollup.calls == {"fail": 1, "retry": 3}
    assert {e["status"]: e["count"] for e in rollup.errors.values()} == {"404": 1, "500": 3}
