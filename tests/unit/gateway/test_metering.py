from __future__ import annotations

import httpx
import pytest
from prometheus_client import generate_latest

from cadastre.errors import AddressRefused
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.metering import MeteringTransport
from cadastre.observe import Metrics

from .conftest import TokenEndpoint, client_credentials

POLICY = VendorPolicy(vendor="demo", max_attempts=3)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_every_attempt_is_counted_by_outcome(clock) -> None:
    answers = iter([httpx.Response(503), httpx.Response(429), httpx.Response(200)])
    metrics = Metrics()
    gateway = Gateway("https://vendor.test", POLICY, clock=clock, metrics=metrics,
                      connection="austin-mls",
                      transport=httpx.MockTransport(lambda r: next(answers)))  # fmt: skip
    async with gateway:
        await gateway.get("/Property")
    labels = {"vendor": "demo", "connection": "austin-mls"}
    for outcome in ("retry", "rate_limited", "success"):
        assert sample(metrics, "cadastre_vendor_requests_total", outcome=outcome, **labels) == 1
    assert sample(metrics, "cadastre_vendor_request_seconds_count", **labels) == 3


async def test_transport_errors_are_counted_and_re_raised(clock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    metrics = Metrics()
    meter = MeteringTransport(httpx.MockTransport(refuse), metrics, POLICY, "c", clock)
    with pytest.raises(httpx.ConnectError):
        await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    assert sample(metrics, "cadastre_vendor_requests_total", vendor="demo", connection="c",
                  outcome="retry") == 1  # fmt: skip


async def test_latency_is_measured_on_the_clock(clock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        clock.advance(0.3)
        return httpx.Response(200)

    metrics = Metrics()
    meter = MeteringTransport(httpx.MockTransport(slow), metrics, POLICY, "c", clock)
    await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    text = generate_latest(metrics.registry).decode()
    assert (
        'cadastre_vendor_request_seconds_bucket{connection="c",le="0.25",vendor="demo"} 0.0' in text
    )
    assert (
        'cadastre_vendor_request_seconds_bucket{connection="c",le="0.5",vendor="demo"} 1.0' in text
    )


async def test_token_requests_are_metered_under_the_same_labels(clock) -> None:
    metrics = Metrics()
    gateway = Gateway(
        "https://vendor.test", POLICY, clock=clock, auth=await client_credentials(clock),
        metrics=metrics, connection="c", transport=httpx.MockTransport(TokenEndpoint()),
    )  # fmt: skip
    async with gateway:
        await gateway.get("/Property")
    assert sample(metrics, "cadastre_vendor_requests_total", vendor="demo", connection="c",
                  outcome="success") == 2  # fmt: skip


async def test_one_debug_line_per_call_with_the_path_only(clock, caplog) -> None:
    caplog.set_level("DEBUG", logger="cadastre.gateway")
    meter = MeteringTransport(httpx.MockTransport(lambda r: httpx.Response(404)), None, POLICY,
                              "c", clock)  # fmt: skip
    await meter.handle_async_request(
        httpx.Request("GET", "https://vendor.test/Property?api_key=qs-secret-1")
    )
    (record,) = caplog.records
    assert record.getMessage() == "vendor demo: GET /Property -> 404 Not Found in 0.000 s"
    assert (record.vendor, record.connection, record.outcome) == ("demo", "c", "fail")
    assert "qs-secret-1" not in caplog.text


async def test_metrics_are_optional(clock) -> None:
    meter = MeteringTransport(httpx.MockTransport(lambda r: httpx.Response(200)), None, POLICY,
                              "", clock)  # fmt: skip
    response = await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    assert response.status_code == 200


async def test_a_call_refused_for_its_address_is_not_a_vendor_request(clock) -> None:
    def guard(request: httpx.Request) -> httpx.Response:
        raise AddressRefused("host 'vendor.test' resolves only to refused addresses")

    metrics = Metrics()
    meter = MeteringTransport(httpx.MockTransport(guard), metrics, POLICY, "c", clock)
    with pytest.raises(AddressRefused):
        await meter.handle_async_request(httpx.Request("GET", "https://vendor.test/x"))
    labels = {"vendor": "demo", "connection": "c"}
    assert sample(metrics, "cadastre_vendor_requests_total", outcome="fail", **labels) is None
    assert sample(metrics, "cadastre_vendor_request_seconds_count", **labels) is None
