from __future__ import annotations

import httpx
import pytest

import cadastre.gateway
from cadastre.errors import (
    ConfigurationError,
    VendorAuthRefused,
    VendorProtocolError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.gateway import Gateway, VendorPolicy

POLICY = VendorPolicy(vendor="demo", max_attempts=2)


def gateway(clock, handler, base: str = "https://vendor.test/odata") -> Gateway:
    return Gateway(base, POLICY, clock=clock, transport=httpx.MockTransport(handler))


def test_the_public_surface_is_small_and_exact() -> None:
    assert set(cadastre.gateway.__all__) == {
        "AddressAllowList", "Authenticator", "BreakerPolicy", "BreakerSnapshot", "BreakerState",
        "CallRecord", "Classification", "FailSafeRateLimitBackend", "Gateway", "GatewayControls",
        "GatewaySettings", "GatewayTokenEndpoint", "Guards", "MemoryRateLimitBackend", "Outcome",
        "RateRule", "RedisRateLimitBackend", "SchemaTranslator", "VaultAuth", "VendorPolicy",
        "classify", "origin",
    }  # fmt: skip


async def test_paths_join_the_base_url_and_params_are_sent(clock) -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"value": []})

    async with gateway(clock, handler) as gw:
        assert await gw.get_json("Property", params={"$top": 2}) == {"value": []}
        await gw.get("https://vendor.test/odata/Property?$skip=2")
    assert [str(u) for u in seen] == ["https://vendor.test/odata/Property?%24top=2",
                                      "https://vendor.test/odata/Property?$skip=2"]  # fmt: skip


async def test_json_is_asked_for_and_policy_timeouts_are_set(clock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    policy = VendorPolicy(vendor="demo", connect=2, read=7)
    async with Gateway("https://vendor.test", policy, clock=clock,
                       transport=httpx.MockTransport(handler)) as gw:  # fmt: skip
        await gw.get_json("/x")
    assert seen[0].headers["Accept"] == "application/json"
    assert seen[0].headers["User-Agent"].startswith("cadastre/")
    assert seen[0].extensions["timeout"] == {"connect": 2, "read": 7, "write": 7, "pool": 2}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, VendorRejected), (403, VendorRejected), (404, VendorRejected),
        (409, VendorRejected), (422, VendorRejected), (302, VendorRejected),
        (401, VendorAuthRefused),
        (429, VendorRateLimited),
        (500, VendorUnavailable), (501, VendorUnavailable), (503, VendorUnavailable),
        (408, VendorUnavailable),
    ],
)  # fmt: skip
async def test_answers_map_to_errors(clock, status: int, error: type[Exception]) -> None:
    async with gateway(clock, lambda r: httpx.Response(status, text="token=body-secret")) as gw:
        with pytest.raises(error) as raised:
            await gw.get("Property", params={"api_key": "qs-secret"})
    assert type(raised.value) is error
    message = str(raised.value)
    assert message.startswith(f"vendor 'demo': GET /odata/Property answered {status}")
    assert "qs-secret" not in message
    assert "body-secret" not in message
    if isinstance(raised.value, VendorRejected):
        assert raised.value.status == status


async def test_the_message_says_how_many_attempts_were_made(clock) -> None:
    async with gateway(clock, lambda r: httpx.Response(503)) as gw:
        with pytest.raises(VendorUnavailable, match=r"503 Service Unavailable after 2 attempts$"):
            await gw.get("Property")


async def test_429_carries_retry_after_into_the_error(clock) -> None:
    answer = httpx.Response(429, headers={"Retry-After": "20"})
    async with gateway(clock, lambda r: answer) as gw:
        with pytest.raises(VendorRateLimited, match="retry after 20 s") as raised:
            await gw.get("Property")
    assert raised.value.retry_after == 20


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout, httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError,
     httpx.RemoteProtocolError],
)  # fmt: skip
async def test_transport_failures_are_vendor_unavailable(clock, error: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("gone", request=request)  # type: ignore[call-arg]

    async with gateway(clock, fail) as gw:
        with pytest.raises(VendorUnavailable, match=rf"GET /odata/x failed: {error.__name__}$"):
            await gw.get("x?secret=qs")


async def test_a_body_that_does_not_decode_is_a_protocol_error(clock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"not gzip"))

    async with gateway(clock, answer) as gw:
        with pytest.raises(VendorProtocolError, match="failed: DecodingError"):
            await gw.get("x")


@pytest.mark.parametrize("body", [b"<html>502</html>", b'{"value": [1, 2', b"", b"\xff\xfe"])
async def test_get_json_refuses_garbage_and_truncated_bodies(clock, body: bytes) -> None:
    async with gateway(clock, lambda r: httpx.Response(200, content=body)) as gw:
        with pytest.raises(
            VendorProtocolError, match="GET /odata/x answered a body that is not JSON"
        ) as raised:
            await gw.get_json("x")
    assert raised.value.__context__ is None


async def test_a_body_shorter_than_its_content_length_is_retried_then_unavailable(clock) -> None:
    class Short(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'{"value": '
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    async with gateway(clock, lambda r: httpx.Response(200, stream=Short())) as gw:
        with pytest.raises(VendorUnavailable, match="RemoteProtocolError"):
            await gw.get_json("x")


async def test_writes_send_their_body(clock) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(201, json={"id": "1"})

    async with gateway(clock, handler) as gw:
        response = await gw.request("POST", "Member", json={"name": "A"},
                                    headers={"Idempotency-Key": "k"})  # fmt: skip
    assert (response.status_code, seen) == (201, [b'{"name":"A"}'])
    assert response.request.url.path == "/odata/Member"


async def test_another_origin_never_gets_the_request(clock) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with gateway(clock, record) as gw:
        for url in ["https://evil.test/odata/x", "http://vendor.test/odata/x",
                    "https://vendor.test:8443/odata/x"]:  # fmt: skip
            with pytest.raises(ConfigurationError, match="not the origin this gateway serves"):
                await gw.get(url)
    assert sent == []


@pytest.mark.parametrize("base", ["/relative", "ftp://vendor.test", "vendor.test"])
def test_the_base_url_must_be_absolute_http(clock, base: str) -> None:
    with pytest.raises(ConfigurationError, match="base URL must be absolute"):
        gateway(clock, lambda r: httpx.Response(200), base=base)


def test_repr_names_the_vendor_and_host_only(clock) -> None:
    gw = gateway(
        clock, lambda r: httpx.Response(200), base="https://user:pw-secret@vendor.test/x?k=v"
    )
    assert repr(gw) == "Gateway(vendor='demo', base_url='https://vendor.test')"


async def test_aclose_closes_the_innermost_transport(clock) -> None:
    closed: list[bool] = []

    class Inner(httpx.MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    async with Gateway("https://vendor.test", POLICY, clock=clock,
                       transport=Inner(lambda r: httpx.Response(200))):  # fmt: skip
        pass
    assert closed == [True]


async def test_proxy_variables_cannot_route_around_the_chain(clock, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with gateway(clock, record) as gw:
        await gw.get("x")
    assert len(sent) == 1


async def test_a_closed_gateway_sends_nothing(clock) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    gw = gateway(clock, record)
    await gw.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await gw.get("x")
    assert sent == []
