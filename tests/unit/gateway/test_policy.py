from __future__ import annotations

import pytest

from cadastre.errors import ConfigurationError
from cadastre.gateway import VendorPolicy


def test_defaults() -> None:
    policy = VendorPolicy(vendor="demo")
    assert (policy.max_attempts, policy.backoff_base, policy.backoff_cap) == (5, 0.5, 30.0)
    assert policy.retry_statuses == {408, 425, 429, 500, 502, 503, 504}


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"vendor": " "}, "vendor must be named"),
        ({"connect": 0}, "connect must be a positive"),
        ({"read": -1.0}, "read must be a positive"),
        ({"total": float("inf")}, "total must be a positive"),
        ({"backoff_base": float("nan")}, "backoff_base must be a positive"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"backoff_base": 2.0, "backoff_cap": 1.0}, "backoff_cap must not be below"),
        ({"retry_statuses": frozenset({404, 503})}, r"retry_statuses \[404\]"),
        ({"retry_statuses": frozenset({200})}, r"retry_statuses \[200\]"),
    ],
)
def test_invalid_policies_are_refused_at_load(kwargs: dict[str, object], problem: str) -> None:
    values: dict[str, object] = {"vendor": "demo", **kwargs}
    with pytest.raises(ConfigurationError, match=problem):
        VendorPolicy(**values)  # type: ignore[arg-type]


def test_retry_statuses_from_settings_become_a_frozenset() -> None:
    policy = VendorPolicy(vendor="demo", retry_statuses=[503, 429])  # type: ignore[arg-type]
    assert policy.retry_statuses == frozenset({503, 429})
    assert isinstance(policy.retry_statuses, frozenset)
