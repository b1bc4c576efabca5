"""The assembled pipeline: a trace span and a call record per call, the schema translation hook,
and the shared controls keyed as RELIABILITY.md #21 says (breakers and budgets per tenant and
connection, bulkheads per vendor, quota buckets per credential)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cadastre.errors import VendorRejected
from cadastre.gateway import (
    AddressAllowList,
    Gateway,
    GatewayControls,
    GatewaySettings,
    VendorPolicy,
)
from cadastre.testing import FakeClock

POLICY = VendorPolicy(vendor="demo", max_attempts=2, backoff_base=0.01, backoff_cap=0.01)
SETTINGS = GatewaySettings.model_validate(
    {"rate_limit": {"requests": 100, "per": 1}, "connection_rate_limit": {"requests": 50}}
)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/missing"):
        return httpx.Response(404)
    if request.method == "POST":
        return httpx.Response(201, content=request.content)
    return httpx.Response(200, json={"d": {"results": [{"Key": "L1"}]}})


def gateway(clock: FakeClock, controls: GatewayControls, **kw: Any) -> Gateway:
    guards = controls.guards(tenant="acme", connection="mls", vendor="demo", settings=SETTINGS,
                             credential="mls")  # fmt: skip
    return Gateway("https://vendor.test/odata", POLICY, clock=clock,
                   guards=guards, transport=httpx.MockTransport(handler), connection="mls",
                   **kw)  # fmt: skip


async def test_each_call_gets_a_span_and_a_record_naming_every_layer(
    spans: InMemorySpanExporter,
) -> None:
    clock = FakeClock(autojump=True)
    controls = GatewayControls(clock)
    spans.clear()
    async with gateway(clock, controls) as gw:
        await gw.get("Property", params={"$top": "1", "access_token": "canary-0451"})
        with pytest.raises(VendorRejected):
            await gw.get("missing")
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["GET demo", "GET demo"]
    ok, missing = finished
    assert ok.attributes is not None
    assert ok.attributes["url.path"] == "/odata/Property"
    assert ok.attributes["http.response.status_code"] == 200
    assert ok.attributes["cadastre.connection"] == "mls"
    assert missing.status.status_code is trace.StatusCode.ERROR
    assert "canary-0451" not in str([dict(s.attributes or {}) for s in finished])
    first, second = list(controls.calls)
    assert (first.outcome, second.outcome) == ("success", "VendorRejected")
    assert first.tenant == "acme"
    assert first.bulkhead == "demo"
    assert first.breaker == "acme/mls"
    assert first.rate_buckets == ("conn:acme:mls", first.rate_buckets[1])
    assert first.rate_buckets[1].startswith("quota:demo:")
    assert first.attempts == 1
    assert "canary-0451" not in first.path


class Unwrap:
    """An OData v2 vendor's ``{"d": {"results": [...]}}`` in the v4 shape the connector reads."""

    def inbound(self, payload: Any, *, path: str) -> Any:
        return {"value": payload["d"]["results"]}

    def outbound(self, body: Any, *, path: str) -> Any:
        return {"d": body}


async def test_the_translator_rewrites_bodies_both_ways() -> None:
    clock = FakeClock(autojump=True)
    async with gateway(clock, GatewayControls(clock), translator=Unwrap()) as gw:
        assert await gw.get_json("Property") == {"value": [{"Key": "L1"}]}
        sent = await gw.request("POST", "Property", json={"Key": "L2"})
    assert sent.json() == {"d": {"Key": "L2"}}


def test_controls_share_what_is_shared_and_keep_apart_what_is_not() -> None:
    controls = GatewayControls(FakeClock())

    def guards(tenant: str, connection: str, vendor: str, credential: str | None) -> Any:
        return controls.guards(tenant=tenant, connection=connection, vendor=vendor,
                               settings=SETTINGS, credential=credential)  # fmt: skip

    a = guards("acme", "mls", "bridge", "bridge")
    b = guards("globex", "mls", "bridge", "bridge")  # same vendor quota, another tenant
    c = guards("globex", "other", "trestle", "trestle")
    assert a.breaker is not b.breaker  # a tenant's failures never open another's breaker
    assert a.budget is not b.budget
    assert a.bulkhead is b.bulkhead  # one vendor, one cap on calls in flight
    assert a.bulkhead is not c.bulkhead
    assert a.vendor_limiter is b.vendor_limiter  # one credential, one quota
    assert a.vendor_limiter is not c.vendor_limiter
    assert a.limiters[0] is not b.limiters[0]  # each connection's own share
    assert guards("acme", "mls", "bridge", "bridge").breaker is a.breaker  # kept across gateways
    assert set(controls.breaker_states("acme")) == {"mls"}
    assert set(controls.breaker_states("globex")) == {"mls", "other"}


def test_a_declared_quota_is_shared_across_credentials() -> None:
    controls = GatewayControls(FakeClock())
    shared = GatewaySettings.model_validate({**SETTINGS.model_dump(), "quota": "bridge-4711"})
    one = controls.guards(tenant="a", connection="x", vendor="v", settings=shared, credential="a")
    two = controls.guards(tenant="b", connection="y", vendor="v", settings=shared, credential="b")
    assert one.vendor_limiter is two.vendor_limiter
    assert one.vendor_limiter is not None
    assert one.vendor_limiter.key == "quota:bridge-4711"


@pytest.mark.parametrize(
    ("asked", "ceiling", "outside"),
    [
        (["127.0.0.0/8"], ["127.0.0.0/8", "::1"], []),
        (["127.0.0.1"], ["127.0.0.0/8"], []),
        (["10.0.0.0/8"], ["127.0.0.0/8"], ["10.0.0.0/8"]),
        (["127.0.0.0/8"], [], ["127.0.0.0/8"]),
        (["sim.local"], ["127.0.0.0/8"], ["sim.local"]),
        (["sim.local", "10.1.0.0/16"], ["sim.local", "10.0.0.0/8"], []),
        (["::1"], ["127.0.0.0/8"], ["::1/128"]),
    ],
)
def test_a_connection_may_narrow_the_operators_allow_list_never_widen_it(
    asked: list[str], ceiling: list[str], outside: list[str]
) -> None:
    assert AddressAllowList.parse(asked).beyond(AddressAllowList.parse(ceiling)) == outside


def test_gateway_settings_refuse_unknown_keys_and_bad_limits() -> None:
    with pytest.raises(ValueError, match="extra"):
        GatewaySettings.model_validate({"rate_limt": {"requests": 5}})
    with pytest.raises(ValueError, match="requests"):
        GatewaySettings.model_validate({"rate_limit": {"requests": 1}})
    # checked with the connection's other settings, so the error names the connection
    with pytest.raises(ValueError, match=r"breaker\n.*minimum_calls \(60\) is more than"):
        GatewaySettings.model_validate({"breaker": {"minimum_calls": 60}})
    with pytest.raises(ValueError, match=r"allow_hosts\n.*'10\.0\.0\.1/8': host bits set"):
        GatewaySettings.model_validate({"allow_hosts": ["10.0.0.1/8"]})
