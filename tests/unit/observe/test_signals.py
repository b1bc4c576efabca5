"""Signals: latency buckets and quantiles, response shapes, error fingerprints (redacted),
endpoints, and the in-process accumulator."""

from __future__ import annotations

import itertools
import math
import random
from datetime import timedelta

import pytest

from cadastre.observe import (
    LATENCY_EDGES,
    SECRETS,
    CallObservation,
    Observations,
    endpoint_of,
    error_fingerprint,
    latency_bucket,
    merge_rollups,
    quantile,
    shape_of,
)
from cadastre.observe.signals import BUCKETS, MAX_DISTINCT, OTHER, SAMPLE_CHARS
from cadastre.ports import MinuteRollup
from cadastre.testing import EPOCH, FakeClock

# ------------------------------------------------------------------ latency


def test_edges_are_log_spaced_from_2_ms_to_2_minutes() -> None:
    assert LATENCY_EDGES[0] == 0.002
    assert LATENCY_EDGES[-1] == 120.0
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_EDGES)]
    assert all(1.2 < r < 1.3 for r in ratios)
    assert len(LATENCY_EDGES) + 1 == BUCKETS


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0), (-1.0, 0), (math.nan, 0), (0.001, 0), (0.002, 0),  # an edge is inclusive
        (0.0021, 1), (LATENCY_EDGES[10], 10), (LATENCY_EDGES[10] * 1.0001, 11),
        (120.0, len(LATENCY_EDGES) - 1), (120.01, len(LATENCY_EDGES)), (1e9, len(LATENCY_EDGES)),
    ],
)  # fmt: skip
def test_latency_bucket_boundaries(seconds: float, bucket: int) -> None:
    assert latency_bucket(seconds) == bucket


def test_quantile_interpolates_inside_its_bucket() -> None:
    buckets = [0] * BUCKETS
    buckets[10] = 10
    lower, upper = LATENCY_EDGES[9], LATENCY_EDGES[10]
    assert quantile(buckets, 0.5) == pytest.approx(lower + 0.5 * (upper - lower))
    assert quantile(buckets, 1.0) == pytest.approx(upper)
    assert quantile(buckets, 0.0) == pytest.approx(lower)
    buckets[20] = 10  # half the calls much slower: the p95 is in the upper bucket
    assert LATENCY_EDGES[19] < (quantile(buckets, 0.95) or 0) <= LATENCY_EDGES[20]
    # the first bucket starts at 0; the overflow bucket reads as the last edge
    assert quantile([4], 0.5) == pytest.approx(0.001)
    overflow = [0] * BUCKETS
    overflow[-1] = 3
    assert quantile(overflow, 0.5) == LATENCY_EDGES[-1]
    # fewer buckets (a short stored histogram) are the leading ones
    assert quantile([0, 2], 1.0) == pytest.approx(LATENCY_EDGES[1])


def test_quantile_is_within_one_bucket_of_the_true_one() -> None:
    rng = random.Random(9)
    samples = [rng.lognormvariate(-2.0, 1.2) for _ in range(2000)]
    buckets = [0] * BUCKETS
    for s in samples:
        buckets[latency_bucket(s)] += 1
    true_p95 = sorted(samples)[int(0.95 * len(samples)) - 1]
    found = quantile(buckets, 0.95)
    assert found is not None
    assert true_p95 / 1.26 <= found <= true_p95 * 1.26


def test_quantile_refuses_nonsense_and_says_none_when_empty() -> None:
    assert quantile([], 0.5) is None
    assert quantile([0] * BUCKETS, 0.95) is None
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        quantile([1], 1.5)
    with pytest.raises(ValueError, match="more than"):
        quantile([1] * (BUCKETS + 1), 0.5)


# ------------------------------------------------------------------ shapes

PAGE = {
    "@odata.context": "$metadata#Property",
    "value": [
        {"ListingKey": "L1", "ListPrice": 100, "Media": [{"MediaURL": "https://x/1.jpg"}],
         "Address": {"City": "Austin", "Geo": {"Lat": 30.2, "Lon": -97.7}}},
        {"ListingKey": "L2", "Unexpected": True},  # only the first element describes an array
    ],
}  # fmt: skip


def test_shape_lists_typed_key_paths_and_never_values() -> None:
    fp, keys = shape_of(PAGE)
    assert keys == [
        "@odata.context:string",
        "value:array",
        "value[].Address.City:string",
        "value[].Address.Geo:object",
        "value[].Address:object",
        "value[].ListPrice:number",
        "value[].ListingKey:string",
        "value[].Media:array",
        "value[].Media[]:object",
        "value[]:object",
    ]  # depth 4: Geo's keys and MediaURL are below it
    assert len(fp) == 16
    text = repr(shape_of(PAGE))
    for value in ("L1", "Austin", "100", "x/1.jpg", "Unexpected"):
        assert value not in text


def test_shape_is_stable_under_values_and_changes_with_keys_and_types() -> None:
    fp = shape_of(PAGE)[0]
    other_values = {
        "@odata.context": "elsewhere",
        "value": [{"ListingKey": "Z9", "ListPrice": 7.5, "Media": [{"MediaURL": "y"}],
                   "Address": {"City": "Waco", "Geo": {"Lat": 1, "Lon": 2}}}],
    }  # fmt: skip
    assert shape_of(other_values)[0] == fp
    renamed = {**PAGE, "value": [{**PAGE["value"][0], "ListPrice": None}]}  # type: ignore[dict-item]
    assert shape_of(renamed)[0] != fp  # a number turned null
    typed = {**PAGE, "value": [{**PAGE["value"][0], "ListPrice": "100"}]}  # type: ignore[dict-item]
    assert shape_of(typed)[0] != fp
    added = {**PAGE, "@odata.nextLink": "next"}
    assert shape_of(added)[0] != fp
    assert shape_of([1, 2]) == shape_of([3])
    assert shape_of([1])[1] == ["$:array", "$[]:number"]
    assert shape_of("text")[1] == ["$:string"]
    assert shape_of({})[0] != shape_of([])[0]


def test_a_shape_lists_a_bounded_number_of_paths() -> None:
    _, keys = shape_of({f"id{i}": {"n": i} for i in range(5000)})
    assert len(keys) == 256


# ------------------------------------------------------------------ errors


def test_error_fingerprints_ignore_ids_numbers_and_timestamps() -> None:
    one = error_fingerprint(
        "503",
        b'{"error": "backend busy", "request_id": "8f3e2a1b9c", '
        b'"trace": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "at": "2026-01-01T10:00:00Z", '
        b'"retry_in": 30, "ref": "req_8Zx31kQ"}',
    )
    two = error_fingerprint(
        "503",
        '{"error": "backend busy", "request_id": "77aa01ff42", '
        '"trace": "00000000-1111-2222-3333-444444444444", "at": "2026-03-09 23:59:01.5+02:00", '
        '"retry_in": 5, "ref": "req_Q1w2E3r"}',
    )
    assert one[0] == two[0]
    assert (
        error_fingerprint("500", b'{"error": "backend busy"}')[0]
        != (error_fingerprint("503", b'{"error": "backend busy"}')[0])
    )
    assert error_fingerprint("503", b"maintenance")[0] != error_fingerprint("503", b"overload")[0]
    assert error_fingerprint("timeout", None) == (error_fingerprint("timeout", b"")[0], "")


def test_error_samples_are_redacted_neutralised_and_capped() -> None:
    canary = "CANARY-c7f1e0d2a9b84c6e"
    registered = "sk_live_registered_9d8c7b6a"
    SECRETS.add(registered)
    bodies = [
        f'{{"error": "invalid_client", "client_secret": "{canary}"}}',
        f"Authorization: Bearer {canary} was refused",
        f"token={canary}&x=1",
        f"https://user:{canary}@vendor.test/x",
        f"your key {registered} is revoked",
    ]
    for body in bodies:
        _, sample = error_fingerprint("401", body.encode())
        assert canary not in sample, sample
        assert registered not in sample, sample
        assert "[REDACTED]" in sample
    # the secret does not make every answer look new either
    assert (
        error_fingerprint("401", bodies[0])[0]
        == error_fingerprint("401", bodies[0].replace(canary, "another-secret-value"))[0]
    )
    _, sample = error_fingerprint("500", "line one\nline two\x1b[31m" + "x" * 5000)
    assert "\n" not in sample
    assert "\x1b" not in sample
    assert len(sample) == SAMPLE_CHARS
    assert error_fingerprint("500", b"\xff\xfe not utf-8")[1].endswith("not utf-8")


# ------------------------------------------------------------------ endpoints


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("get", "/odata/Property", "GET /odata/Property"),
        ("GET", "/odata/Property('L123')", "GET /odata/Property({id})"),
        ("GET", "/crm/v3/objects/contacts/12345?x=1", "GET /crm/v3/objects/contacts/{id}"),
        ("PUT", "/v1/rentals/3fa85f64-5717-4562-b3fc-2c963f66afa6/leases",
         "PUT /v1/rentals/{id}/leases"),
        ("POST", "/oauth/token", "POST /oauth/token"),
        ("GET", "/", "GET /"),
        ("GET", "/files/" + "a" * 50, "GET /files/{id}"),
    ],
)  # fmt: skip
def test_endpoints_replace_ids(method: str, path: str, endpoint: str) -> None:
    assert endpoint_of(method, path) == endpoint


# ------------------------------------------------------------------ the accumulator


def call(outcome: str = "success", status: str = "200", seconds: float = 0.05,
         **extra: object) -> CallObservation:  # fmt: skip
    fields: dict[str, object] = {
        "tenant": "acme", "connection": "austin-mls", "vendor": "reso@mls.test",
        "outcome": outcome, "status": status, "seconds": seconds,
        "endpoint": "GET /odata/Property",
    }  # fmt: skip
    return CallObservation(**(fields | extra))  # type: ignore[arg-type]


def test_observations_roll_up_by_tenant_connection_and_minute() -> None:
    clock = FakeClock(EPOCH + timedelta(seconds=10))
    seen = Observations(clock)
    seen.record(call())
    seen.record(call("retry", "503", 1.0, error=error_fingerprint("503", b"busy 1")))
    seen.record(call("retry", "503", 1.0, error=error_fingerprint("503", b"busy 2")))
    seen.note_shape("acme", "austin-mls", "GET /odata/Property", shape_of(PAGE))
    seen.count("acme", "austin-mls", "records_synced", 200)
    seen.gauge("acme", "", "outbox_backlog", 3)
    seen.gauge("acme", "", "outbox_backlog", 5)  # last wins
    seen.record(call(tenant="globex"))
    clock.advance(60)
    seen.record(call(seconds=0.2))
    first = seen.drain(before=clock.now())  # only the closed minute
    assert sorted(first) == ["acme", "globex"]
    connection, tenant_wide = sorted(first["acme"], key=lambda r: r.connection, reverse=True)
    assert (connection.minute, connection.vendor) == (EPOCH, "reso@mls.test")
    assert connection.calls == {"success": 1, "retry": 2}
    assert connection.statuses == {"200": 1, "503": 2}
    assert (sum(connection.latency), len(connection.latency)) == (3, BUCKETS)
    assert connection.latency_sum == pytest.approx(2.05)
    (error,) = connection.errors.values()  # two bodies, one error
    assert error == {"count": 2, "status": "503", "sample": "busy 1"}
    (shape,) = connection.shapes.values()
    assert (shape["count"], shape["endpoint"]) == (1, "GET /odata/Property")
    assert connection.counts == {"records_synced": 200}
    assert (tenant_wide.connection, tenant_wide.gauges) == ("", {"outbox_backlog": 5.0})
    rest = seen.drain()
    assert [r.minute for r in rest["acme"]] == [EPOCH + timedelta(minutes=1)]
    assert seen.drain() == {}  # what is drained is gone


def test_observations_refuse_unknown_names_and_non_finite_gauges() -> None:
    seen = Observations(FakeClock())
    with pytest.raises(ValueError, match="unknown counter 'records_synched'"):
        seen.count("acme", "c", "records_synched")
    with pytest.raises(ValueError, match="unknown gauge 'outbox_backlog' for a connection"):
        seen.gauge("acme", "c", "outbox_backlog", 1)
    with pytest.raises(ValueError, match="finite"):
        seen.gauge("acme", "c", "sync_lag_seconds", math.inf)
    assert seen.drain() == {}


def test_a_minute_keeps_a_bounded_number_of_error_fingerprints() -> None:
    seen = Observations(FakeClock())
    for i in range(MAX_DISTINCT + 10):
        seen.record(call("fail", "400", error=(f"fp{i}", "x")))
    (rollup,) = seen.drain()["acme"]
    assert len(rollup.errors) == MAX_DISTINCT + 1
    assert rollup.errors[OTHER]["count"] == 10


def test_restore_puts_drained_minutes_back_merged() -> None:
    clock = FakeClock()
    seen = Observations(clock)
    seen.record(call())
    seen.gauge("acme", "austin-mls", "quarantine_open", 1)
    drained = seen.drain()["acme"]
    seen.record(call("fail", "404"))
    seen.gauge("acme", "austin-mls", "quarantine_open", 2)
    seen.restore("acme", drained)
    (rollup,) = seen.drain()["acme"]
    assert rollup.calls == {"success": 1, "fail": 1}
    assert rollup.gauges == {"quarantine_open": 2.0}  # the newer sample wins
    assert seen.pending() == 0
    for _ in range(3):
        seen.record(call())
        clock.advance(60)
    assert seen.drop_oldest(2) == 2
    assert [r.minute for r in seen.drain()["acme"]] == [EPOCH + timedelta(minutes=2)]


def test_merge_adds_counts_and_lets_the_newer_gauge_win() -> None:
    old = MinuteRollup("c", EPOCH, vendor="v", calls={"success": 1}, latency=(1, 2),
                       counts={"sync_ok": 1}, gauges={"a": 1.0, "b": 1.0},
                       errors={"e": {"count": 1, "status": "500", "sample": "first"}})  # fmt: skip
    new = MinuteRollup("c", EPOCH, calls={"success": 2, "fail": 1}, latency=(0, 1, 1),
                       counts={"sync_ok": 1}, gauges={"b": 2.0},
                       errors={"e": {"count": 4, "status": "500", "sample": "second"}})  # fmt: skip
    merged = merge_rollups(old, new)
    assert merged.vendor == "v"
    assert merged.calls == {"success": 3, "fail": 1}
    assert merged.latency == (1, 3, 1)
    assert merged.counts == {"sync_ok": 2}
    assert merged.gauges == {"a": 1.0, "b": 2.0}
    assert merged.errors == {"e": {"count": 5, "status": "500", "sample": "first"}}
    assert old.calls == {"success": 1}  # neither input is changed
