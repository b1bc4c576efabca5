"""Every detector checks its rule parameters by name and says how much history it reads."""

from __future__ import annotations

from typing import Any

import pytest

from cadastre.observe.detectors import DETECTORS

from .detector_data import given


def test_the_registry_names_every_detector_of_the_design() -> None:
    assert set(DETECTORS) == {
        "error_rate", "latency_drift", "behaviour_change", "backlog_growth",
        "credential_expiry", "credential_reauth", "schema_drift", "event",
    }  # fmt: skip
    assert all(name == detector.name for name, detector in DETECTORS.items())


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_defaults_are_valid_and_find_nothing_in_no_data(name: str) -> None:
    detector = DETECTORS[name]
    detector.check_params({})
    assert detector.find(given(), {}) == []


@pytest.mark.parametrize(
    ("detector", "params", "named"),
    [
        ("error_rate", {"windw": 300}, "windw"),
        ("error_rate", {"window": 0}, "window"),
        ("error_rate", {"window": -60}, "window"),
        ("error_rate", {"window": "5m"}, "window"),
        ("error_rate", {"window": float("inf")}, "window"),
        ("error_rate", {"window": float("nan")}, "window"),
        ("error_rate", {"threshold": 0}, "threshold"),
        ("error_rate", {"threshold": 1.01}, "threshold"),
        ("error_rate", {"threshold": True}, "threshold"),
        ("error_rate", {"min_calls": 0}, "min_calls"),
        ("error_rate", {"min_calls": 2.5}, "min_calls"),
        ("latency_drift", {"factor": 0.5}, "factor"),
        ("latency_drift", {"min_delta": -0.1}, "min_delta"),
        ("latency_drift", {"quantile": 1}, "quantile"),
        ("latency_drift", {"baseline": None}, "baseline"),
        ("behaviour_change", {"threshold": 2}, "threshold"),
        ("behaviour_change", {"min_count": 0}, "min_count"),
        ("backlog_growth", {"gauge": "queue"}, "gauge"),
        ("backlog_growth", {"rising": "yes"}, "rising"),
        ("backlog_growth", {"threshold": -1}, "threshold"),
        ("credential_expiry", {"within": 0}, "within"),
        ("credential_reauth", {"within": 60}, "within"),
        ("schema_drift", {"window": []}, "window"),
        ("event", {"window": 60}, "window"),
    ],
)
def test_bad_params_are_refused_naming_the_param(
    detector: str, params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=rf"{detector}: .*'?{named}'?"):
        DETECTORS[detector].check_params(params)


@pytest.mark.parametrize(
    ("detector", "params"),
    [
        ("error_rate", {"window": 60, "threshold": 1, "min_calls": 1}),
        ("latency_drift", {"factor": 1, "min_delta": 0, "quantile": 0.5, "baseline": 600}),
        ("behaviour_change", {"threshold": 1, "min_count": 1, "min_calls": 1}),
        ("backlog_growth", {"gauge": "delivery_backlog", "threshold": 0, "rising": False}),
        ("credential_expiry", {"within": 1.5}),
        ("schema_drift", {"window": 86400}),
    ],
)
def test_params_at_their_bounds_are_accepted(detector: str, params: dict[str, Any]) -> None:
    DETECTORS[detector].check_params(params)


@pytest.mark.parametrize(
    ("detector", "params", "seconds"),
    [
        ("error_rate", {}, 300 + 60),
        ("error_rate", {"window": 120}, 120 + 60),
        ("latency_drift", {}, 300 + 3600 + 60),
        ("behaviour_change", {"window": 60, "baseline": 600}, 60 + 600 + 60),
        ("backlog_growth", {"window": 600}, 600 + 60),
        ("schema_drift", {"window": 7200}, 7200 + 60),
        ("credential_expiry", {}, 0),
        ("event", {}, 0),
    ],
)
def test_span_covers_the_window_the_baseline_and_the_partial_first_minute(
    detector: str, params: dict[str, Any], seconds: float
) -> None:
    assert DETECTORS[detector].span(params) == seconds
