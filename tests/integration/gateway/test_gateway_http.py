"""The gateway end to end over real HTTP: a small Starlette vendor on uvicorn, on loopback, in this
event loop. Backoff waits run on a fake clock; only the read timeout is real (a socket timeout)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cadastre.errors import CredentialNeedsReauth, VendorProtocolError, VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.observe import Metrics
from tests.unit.gateway.conftest import (
    CANARY_SECRET,
    CANARY_TOKEN,
    CLIENT_ID,
    SteppingClock,
    client_credentials,
)

BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CANARY_SECRET}".encode()).decode()


class Cut(Exception):
    """Raised mid-body so uvicorn drops the connection."""


@dataclass
class VendorState:
    token_requests: int = 0
    generation: int = 1
    hits: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def token(self) -> str:
        return f"{CANARY_TOKEN}-{self.generation}"

    def hit(self, name: str) -> int:
        self.hits[name] = self.hits.get(name, 0) + 1
        return self.hits[name]


def vendor_app(state: VendorState) -> Starlette:
    async def token(request: Request) -> Response:
        state.token_requests += 1
        form = parse_qs((await request.body()).decode())
        if request.headers.get("authorization") != BASIC:
            return JSONResponse(
                {"error": "invalid_client", "error_description": f"bad {CANARY_SECRET}?"}, 401
            )
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        return JSONResponse({"access_token": state.token(), "token_type": "Bearer",
                             "expires_in": 3600})  # fmt: skip

    async def api(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {state.token()}":
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"value": [{"ListingKey": "L1"}]})

    async def flaky(request: Request) -> Response:
        if state.hit("flaky") == 1:
            return Response("busy", 503)
        return JSONResponse({"value": []})

    async def limited(request: Request) -> Response:
        if state.hit("limited") == 1:
            return Response("slow down", 429, headers={"Retry-After": "2"})
        return JSONResponse({"value": []})

    async def hang(request: Request) -> Response:
        state.hit("hang")
        await state.release.wait()
        return JSONResponse({})

    async def cut(request: Request) -> Response:
        state.hit("cut")

        async def body() -> AsyncIterator[bytes]:
            yield b'{"value": ['
            raise Cut

        return StreamingResponse(body(), media_type="application/json")

    async def garbage(request: Request) -> Response:
        state.hit("garbage")
        return Response("<html>upstream error</html>", 200, media_type="application/json")

    async def write(request: Request) -> Response:
        state.hit("write")
        return Response("busy", 503)

    return Starlette(routes=[
        Route("/oauth/token", token, methods=["POST"]),
        Route("/odata/Property", api),
        Route("/odata/flaky", flaky),
        Route("/odata/limited", limited),
        Route("/odata/hang", hang),
        Route("/odata/cut", cut),
        Route("/odata/garbage", garbage),
        Route("/odata/write", write, methods=["POST"]),
    ])  # fmt: skip


@dataclass
class Running:
    state: VendorState
    url: str


class _QuietCuts(logging.Filter):
    """uvicorn logs the exception that cut a body at ERROR; cutting is the point of that route."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Cut" not in repr(record.exc_info[1] if record.exc_info else None)


@pytest.fixture
async def vendor() -> AsyncIterator[Running]:
    state = VendorState()
    config = uvicorn.Config(
        vendor_app(state), host="127.0.0.1", port=0, lifespan="off", ws="none",
        log_config=None, access_log=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    quiet = _QuietCuts()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    # startup() rather than serve(): serve() would take over the test process's signal handlers
    await server.startup()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(state, f"http://127.0.0.1:{port}")
    finally:
        state.release.set()
        await server.shutdown()
        logging.getLogger("uvicorn.error").removeFilter(quiet)


LOOPBACK = ("127.0.0.0/8", "::1")  # the test vendors run here; real vendors never may


def policy(**kw: float) -> VendorPolicy:
    return VendorPolicy(vendor="demo", **{"connect": 1.0, "read": 2.0, "max_attempts": 3, **kw})  # type: ignore[arg-type]


def plain(vendor: Running, clock: SteppingClock, **kw: float) -> Gateway:
    return Gateway(f"{vendor.url}/odata", policy(**kw), clock=clock, allow_hosts=LOOPBACK)


async def oauth2(
    vendor: Running, clock: SteppingClock, *, client_secret: str = CANARY_SECRET,
    metrics: Metrics | None = None, connection: str = "",
) -> Gateway:  # fmt: skip
    """A gateway whose calls carry a client-credentials token from the vendor's endpoint."""
    auth = await client_credentials(
        clock, client_secret=client_secret, token_url=f"{vendor.url}/oauth/token"
    )
    return Gateway(f"{vendor.url}/odata", policy(), clock=clock, auth=auth, metrics=metrics,
                   connection=connection, allow_hosts=LOOPBACK)  # fmt: skip


async def test_oauth2_token_once_then_bearer_calls(vendor: Running) -> None:
    clock, metrics = SteppingClock(), Metrics()
    async with await oauth2(vendor, clock, metrics=metrics, connection="c") as gw:
        for _ in range(3):
            assert await gw.get_json("Property", params={"$top": 1}) == {
                "value": [{"ListingKey": "L1"}]
            }
        vendor.state.generation += 1  # the vendor rotates its tokens early
        assert (await gw.get("Property")).status_code == 200
    assert vendor.state.token_requests == 2
    assert (
        metrics.registry.get_sample_value(
            "cadastre_vendor_requests_total",
            {"vendor": "demo", "connection": "c", "outcome": "success"},
        )
        == 6
    )  # 2 token requests + 3 calls + the resend; the refused call counts as a failure


async def test_invalid_client_is_refused_without_echoing_the_secret(vendor: Running) -> None:
    wrong = "canary-wrong-secret-7d41e0"
    async with await oauth2(vendor, SteppingClock(), client_secret=wrong) as gw:
        with pytest.raises(
            CredentialNeedsReauth, match=r"401 Unauthorized \(invalid_client\)"
        ) as e:
            await gw.get("Property")
        # the refusal sticks: no further token request until a person connects it again
        with pytest.raises(CredentialNeedsReauth):
            await gw.get("Property")
    for text in (str(e.value), repr(e.value)):
        assert CANARY_SECRET not in text
        assert wrong not in text
    assert vendor.state.token_requests == 1


async def test_503_then_200(vendor: Running) -> None:
    clock = SteppingClock()
    async with plain(vendor, clock) as gw:
        assert await gw.get_json("flaky") == {"value": []}
    assert vendor.state.hits["flaky"] == 2
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.5


async def test_429_with_retry_after_waits_on_the_clock(vendor: Running) -> None:
    clock = SteppingClock()
    started = time.monotonic()
    async with plain(vendor, clock) as gw:
        assert await gw.get_json("limited") == {"value": []}
    assert vendor.state.hits["limited"] == 2
    assert clock.sleeps[0] >= 2
    assert time.monotonic() - started < 1.5  # the two seconds passed on the fake clock only


async def test_a_hang_ends_at_the_policy_read_timeout(vendor: Running) -> None:
    started = time.monotonic()
    async with plain(vendor, SteppingClock(), read=0.2, max_attempts=2) as gw:
        with pytest.raises(VendorUnavailable, match="GET /odata/hang failed: ReadTimeout"):
            await gw.get("hang")
    elapsed = time.monotonic() - started
    assert vendor.state.hits["hang"] == 2
    assert 0.35 <= elapsed < 2.0


async def test_a_connection_cut_mid_body_is_retried_then_unavailable(vendor: Running) -> None:
    async with plain(vendor, SteppingClock()) as gw:
        with pytest.raises(VendorUnavailable, match="GET /odata/cut failed: RemoteProtocolError"):
            await gw.get_json("cut")
    assert vendor.state.hits["cut"] == 3


async def test_a_garbage_body_is_a_protocol_error(vendor: Running) -> None:
    async with plain(vendor, SteppingClock()) as gw:
        with pytest.raises(VendorProtocolError, match="not JSON"):
            await gw.get_json("garbage")
    assert vendor.state.hits["garbage"] == 1


async def test_a_post_without_a_key_is_sent_once(vendor: Running) -> None:
    async with plain(vendor, SteppingClock()) as gw:
        with pytest.raises(VendorUnavailable, match="503"):
            await gw.request("POST", "write", json={"a": 1})
        assert vendor.state.hits["write"] == 1
        with pytest.raises(VendorUnavailable, match="after 3 attempts"):
            await gw.request("POST", "write", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert vendor.state.hits["write"] == 4


@contextlib.asynccontextmanager
async def resetting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A peer that reads the request and answers with a TCP RST (SO_LINGER 0, then close)."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        await server.wait_closed()


async def test_a_reset_is_retried_then_unavailable() -> None:
    failed = r"GET /x failed: (ReadError|RemoteProtocolError)"
    async with (
        resetting_server() as (url, accepted),
        Gateway(url, policy(), clock=SteppingClock(), allow_hosts=LOOPBACK) as gw,
    ):
        with pytest.raises(VendorUnavailable, match=failed):
            await gw.get("/x")
    assert len(accepted) == 3


async def test_a_refused_connection_is_unavailable_and_safe_to_resend() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = SteppingClock()
    async with Gateway(
        f"http://127.0.0.1:{port}", policy(), clock=clock, allow_hosts=LOOPBACK
    ) as gw:
        with pytest.raises(VendorUnavailable, match="POST /x failed: ConnectError"):
            await gw.request("POST", "/x", json={})
    assert len(clock.sleeps) == 2  # never sent, so even a POST was tried three times
