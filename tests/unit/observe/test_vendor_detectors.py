"""The call detectors as theory tables: error rate, latency drift, behaviour change. Thresholds
are inclusive; below the minimum calls, or against a baseline without data, nothing fires."""

from __future__ import annotations

from typing import Any

import pytest

from cadastre.observe.detectors import DETECTORS, total_variation
from cadastre.observe.signals import quantile
from cadastre.ports import MinuteRollup

from .detector_data import CONNECTION, VENDOR, ago, calls, drift_event, given, latency

ERROR_RATE = {"window": 300, "threshold": 0.25, "min_calls": 20}


def five_minutes(ok: int, failed: int, throttled: int = 0) -> list[MinuteRollup]:
    """``ok``/``failed``/``throttled`` calls spread over the last five closed minutes (the
    first minute takes the remainder)."""

    def share(n: int, minute: int) -> int:
        return n // 5 + (n % 5 if minute == 5 else 0)

    return [
        calls(m, ok=share(ok, m), failed=share(failed, m), throttled=share(throttled, m))
        for m in range(5, 0, -1)
    ]


# ----------------------------------------------------------------------------- error rate


@pytest.mark.parametrize(
    ("ok", "failed", "throttled", "fires"),
    [
        (15, 5, 0, True),  # 25 % of 20: at the threshold
        (16, 4, 0, False),  # 20 %
        (0, 19, 0, False),  # every call failed, but 19 < min_calls
        (0, 20, 0, True),
        (10, 0, 10, False),  # 429s are the vendor pacing us, not failing
        (0, 0, 0, False),  # no calls
    ],
)
def test_error_rate_theory(ok: int, failed: int, throttled: int, fires: bool) -> None:
    found = DETECTORS["error_rate"].find(given(five_minutes(ok, failed, throttled)), ERROR_RATE)
    assert bool(found) is fires


def test_error_rate_finding_names_rate_calls_threshold_window_and_start() -> None:
    rollups = [calls(5, ok=10), calls(4, ok=10), calls(3, ok=2, failed=8), calls(2, failed=10)]
    (finding,) = DETECTORS["error_rate"].find(given(rollups), ERROR_RATE)
    assert finding.key == finding.connection == CONNECTION
    assert finding.vendor == VENDOR
    assert finding.changed.startswith(
        "error rate 45% (18 of 40 calls) over the last 5 min, at or above the 25% threshold"
    )
    assert "503 x18" in finding.changed
    assert finding.started == ago(3)  # the first minute at or above the threshold
    assert finding.facts["failed"] == 18


def test_error_rate_reads_only_its_window() -> None:
    before = [calls(m, failed=20) for m in range(15, 5, -1)]  # minutes before the window
    assert DETECTORS["error_rate"].find(given([*before, *five_minutes(40, 0)]), ERROR_RATE) == []
    now = given([*five_minutes(40, 0), *before])
    assert DETECTORS["error_rate"].find(now, {**ERROR_RATE, "window": 900}) != []


def test_error_rate_skips_paused_connections_and_tenant_wide_minutes() -> None:
    failing = five_minutes(0, 40)
    assert DETECTORS["error_rate"].find(given(failing, paused=True), ERROR_RATE) == []
    tenant_wide = [calls(m, failed=10, connection="") for m in range(5, 0, -1)]
    assert DETECTORS["error_rate"].find(given(tenant_wide), ERROR_RATE) == []


# ----------------------------------------------------------------------------- latency drift

DRIFT = {"window": 300, "baseline": 3600, "factor": 2.0, "min_delta": 0.25, "min_calls": 20}


def slow(window_seconds: float, window_calls: int = 25, base_seconds: float = 0.5,
         base_calls: int = 100) -> list[MinuteRollup]:  # fmt: skip
    base = [calls(m, ok=base_calls // 10, seconds=base_seconds) for m in range(60, 50, -1)]
    now = [calls(m, ok=window_calls // 5, seconds=window_seconds) for m in range(5, 0, -1)]
    return [*base, *now]


def p95_of(seconds: float) -> float:
    value = quantile(latency(seconds, 10), 0.95)
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("data", "params", "fires"),
    [
        (slow(2.4), DRIFT, True),
        (slow(0.6), DRIFT, False),  # 1.2x
        (slow(2.4, window_calls=15), DRIFT, False),  # window under min_calls
        (slow(2.4, base_calls=10), DRIFT, False),  # baseline under min_calls
        (slow(0.05, base_seconds=0.01), DRIFT, False),  # 5x, but only 0.04 s slower
        (slow(0.05, base_seconds=0.01), {**DRIFT, "min_delta": 0.01}, True),
        # at exactly factor x the baseline: inclusive
        (slow(2.4), {**DRIFT, "factor": p95_of(2.4) / p95_of(0.5)}, True),
        (slow(2.4), {**DRIFT, "factor": p95_of(2.4) / p95_of(0.5) * 1.001}, False),
    ],
)
def test_latency_drift_theory(
    data: list[MinuteRollup], params: dict[str, Any], fires: bool
) -> None:
    assert bool(DETECTORS["latency_drift"].find(given(data), params)) is fires


def test_a_few_slow_minutes_in_the_baseline_do_not_lift_it() -> None:
    """The drift's own first minutes, once behind the window, are a tenth of the baseline's
    calls: pooled, they would make its p95; as one minute of ten they leave its median."""
    data = slow(2.4)
    data[-6] = calls(6, ok=10, seconds=2.4)  # the minute before the window, now baseline
    (finding,) = DETECTORS["latency_drift"].find(given(data), DRIFT)
    assert finding.facts["baseline"] == pytest.approx(p95_of(0.5))
    most = [calls(m, ok=10, seconds=2.4 if m % 3 else 0.5) for m in range(60, 50, -1)]
    assert DETECTORS["latency_drift"].find(given([*most, *slow(2.4)[10:]]), DRIFT) == []


def test_latency_drift_without_a_baseline_never_fires() -> None:
    only_now = [calls(m, ok=20, seconds=30.0) for m in range(5, 0, -1)]
    assert DETECTORS["latency_drift"].find(given(only_now), DRIFT) == []


def test_latency_drift_finding_names_p95_baseline_and_windows() -> None:
    data = [*slow(0.5)[:10], calls(5, ok=5, seconds=0.5), *(calls(m, ok=5, seconds=2.4)
                                                            for m in range(4, 0, -1))]  # fmt: skip
    (finding,) = DETECTORS["latency_drift"].find(given(data), DRIFT)
    p95, base = finding.facts["value"], finding.facts["baseline"]
    assert finding.changed == (
        f"p95 {p95:.2f} s over the last 5 min, {p95 / base:.1f}x its baseline {base:.2f} s "
        "(the 1 h before)"
    )
    assert finding.started == ago(4)


# ----------------------------------------------------------------------------- behaviour change

CHANGE = {"window": 300, "baseline": 3600, "threshold": 0.3, "min_calls": 20, "min_count": 3}
ENDPOINT = "GET /odata/Property"
ENVELOPE = ["@odata.context:string", "@odata.nextLink:string", "value:array",
            "value[]:object", "value[].ListPrice:number", "value[].ListingKey:string"]  # fmt: skip


def mix(statuses: dict[str, int], minute: int = 1, **extra: Any) -> MinuteRollup:
    ok = statuses.get("200", 0)
    return calls(minute, ok=ok, failed=sum(statuses.values()) - ok, statuses=statuses, **extra)


BASELINE = [mix({"200": 100}, minute=60)]


@pytest.mark.parametrize(
    ("window", "fires"),
    [
        ({"200": 60, "404": 40}, True),  # 0.4
        ({"200": 70, "404": 30}, True),  # 0.3: at the threshold
        ({"200": 71, "404": 29}, False),
        ({"200": 10, "404": 9}, False),  # 19 calls: under min_calls
        ({"200": 100}, False),
    ],
)
def test_status_mix_theory(window: dict[str, int], fires: bool) -> None:
    found = DETECTORS["behaviour_change"].find(given([*BASELINE, mix(window)]), CHANGE)
    assert bool(found) is fires


def test_total_variation_is_half_the_l1_distance_of_the_shares() -> None:
    assert total_variation({"200": 50, "503": 50}, {"200": 100}) == pytest.approx(0.5)
    assert total_variation({"429": 10}, {"200": 10}) == 1.0
    assert total_variation({}, {"200": 10}) == 0.0


def test_a_status_mix_without_a_baseline_never_fires() -> None:
    assert DETECTORS["behaviour_change"].find(given([mix({"503": 100})]), CHANGE) == []


@pytest.mark.parametrize(
    ("detector", "params"), [("behaviour_change", CHANGE), ("latency_drift", DRIFT)]
)
def test_a_baseline_that_begins_late_is_not_a_baseline_yet(
    detector: str, params: dict[str, Any]
) -> None:
    """A connection first seen 40 minutes ago has 35 minutes of a 1 h baseline: its first 429s or
    slow calls would be changes from "never". Its baseline must reach its first quarter."""
    young = [calls(m, ok=20, statuses={"200": 20}) for m in range(40, 5, -1)]
    change = [
        calls(m, ok=10, failed=10, seconds=5.0, statuses={"429": 20}) for m in range(5, 0, -1)
    ]
    assert DETECTORS[detector].find(given([*young, *change]), params) == []
    older = [calls(55, ok=20, statuses={"200": 20}), *young]
    assert DETECTORS[detector].find(given([*older, *change]), params) != []


def error(status: str, sample: str, count: int) -> dict[str, dict[str, Any]]:
    return {f"fp-{status}-{sample}": {"status": status, "sample": sample, "count": count}}


ODATA_503 = '{"error":{"code":"InjectedFault","message":"injected 503"}}'
ODATA_500 = ODATA_503.replace("503", "500")
PROBLEM = '{"type":"about:blank","title":"Service Unavailable","status":503}'
PROBLEM_500 = '{"type":"about:blank","title":"Internal Server Error","status":500}'


@pytest.mark.parametrize(
    ("window_errors", "fires"),
    [
        (error("503", PROBLEM, 3), True),  # a new form, min_count times
        (error("503", PROBLEM, 2), False),
        ({**error("503", PROBLEM, 2), **error("500", PROBLEM_500, 1)}, True),  # counted together
        (error("500", ODATA_500, 5), False),  # the known form with other digits
        (error("503", ODATA_503, 5), False),  # the very same error
    ],
)
def test_new_error_form_theory(window_errors: dict[str, Any], fires: bool) -> None:
    baseline = [mix({"200": 95, "503": 5}, minute=60, errors=error("503", ODATA_503, 5))]
    window = mix({"200": 95, "503": 5}, errors=window_errors)
    found = DETECTORS["behaviour_change"].find(given([*baseline, window]), CHANGE)
    assert bool(found) is fires
    if fires:
        assert "new error form(s) over the last 5 min, not seen the 1 h before: 503 x" in (
            found[0].changed
        )


def shape(keys: list[str], count: int = 10, endpoint: str = ENDPOINT) -> dict[str, Any]:
    return {f"fp-{endpoint}-{'|'.join(keys)}": {"endpoint": endpoint, "keys": keys,
                                                 "count": count}}  # fmt: skip


def renamed(old: str, new: str) -> list[str]:
    return [k.replace(old, new) for k in ENVELOPE]


@pytest.mark.parametrize(
    ("window_shape", "fires"),
    [
        (shape(renamed("@odata.nextLink", "odata.nextLink")), True),  # a renamed paging key
        (shape([*ENVELOPE, "@sim.notice:string"]), True),  # an extra key
        (shape(renamed("ListPrice:number", "ListPrice:string")), True),  # a number turned text
        (shape(renamed("ListPrice:number", "ListPrice:null")), False),  # an empty value
        (shape([k for k in ENVELOPE if "nextLink" not in k]), False),  # the last page
        (shape(ENVELOPE), False),
        (shape([*ENVELOPE, "x:string"], count=2), False),  # under min_count
        (shape(["d:object"], endpoint="GET /odata/Media"), False),  # an endpoint new to it
    ],
)
def test_new_response_shape_theory(window_shape: dict[str, Any], fires: bool) -> None:
    baseline = [mix({"200": 100}, minute=60, shapes=shape(ENVELOPE, count=100))]
    window = mix({"200": 100}, shapes=window_shape)
    found = DETECTORS["behaviour_change"].find(given([*baseline, window]), CHANGE)
    assert bool(found) is fires


def test_a_new_shape_names_the_endpoint_and_keys_and_drift_explains_it_away() -> None:
    baseline = mix({"200": 100}, minute=60, shapes=shape(ENVELOPE, count=100))
    window = [mix({"200": 50}, minute=3), mix({"200": 50}, minute=2,
              shapes=shape(renamed("@odata.nextLink", "odata.nextLink")))]  # fmt: skip
    (finding,) = DETECTORS["behaviour_change"].find(given([baseline, *window]), CHANGE)
    assert finding.changed == (
        "new response shape(s) over the last 5 min, not seen the 1 h before: "
        f"{ENDPOINT} x10 (+odata.nextLink)"
    )
    assert finding.started == ago(2)
    drifted = given([baseline, *window], drift=[drift_event(ago(2), added={"X": "Edm.String"})])
    assert DETECTORS["behaviour_change"].find(drifted, CHANGE) == []


def test_behaviour_change_reports_every_change_of_a_connection_in_one_finding() -> None:
    baseline = mix({"200": 100}, minute=60, shapes=shape(ENVELOPE, count=100))
    window = mix({"200": 50, "503": 50}, errors=error("503", PROBLEM, 50),
                 shapes=shape([*ENVELOPE, "extra:number"]))  # fmt: skip
    (finding,) = DETECTORS["behaviour_change"].find(given([baseline, window]), CHANGE)
    assert finding.changed.startswith("status mix moved 0.50 (total variation) over the last 5 min")
    assert "new error form(s)" in finding.changed
    assert "new response shape(s)" in finding.changed
    assert set(finding.facts) >= {"distance", "new_errors", "new_shapes"}
