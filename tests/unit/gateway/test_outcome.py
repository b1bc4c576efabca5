from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from cadastre.errors import (
    CredentialError,
    VendorAuthRefused,
    VendorProtocolError,
    VendorRateLimited,
    VendorUnavailable,
)
from cadastre.gateway import Classification, Outcome, VendorPolicy, classify
from cadastre.gateway.outcome import CREDENTIAL_REFUSED, parse_rate_limit_reset, parse_retry_after
from cadastre.testing import EPOCH

POLICY = VendorPolicy(vendor="demo")
NOW = EPOCH


def answer(status: int, headers: dict[str, str] | None = None) -> Classification:
    return classify(httpx.Response(status, headers=headers), POLICY, now=NOW)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS), (201, Outcome.SUCCESS), (204, Outcome.SUCCESS),
        (301, Outcome.FAIL), (304, Outcome.FAIL),
        (400, Outcome.FAIL), (401, Outcome.FAIL), (403, Outcome.FAIL), (404, Outcome.FAIL),
        (409, Outcome.FAIL), (422, Outcome.FAIL),
        (408, Outcome.RETRY), (425, Outcome.RETRY), (429, Outcome.RATE_LIMITED),
        (500, Outcome.RETRY), (502, Outcome.RETRY), (503, Outcome.RETRY), (504, Outcome.RETRY),
        (501, Outcome.FAIL), (505, Outcome.FAIL),
    ],
)  # fmt: skip
def test_statuses(status: int, outcome: Outcome) -> None:
    verdict = answer(status)
    assert verdict.outcome is outcome
    assert verdict.reason.startswith(str(status))


def test_reason_is_the_standard_phrase_not_the_vendors() -> None:
    response = httpx.Response(503, extensions={"reason_phrase": b"token=abc123 leaked"})
    assert classify(response, POLICY, now=NOW).reason == "503 Service Unavailable"


def test_401_to_a_request_that_carried_a_credential_asks_for_a_fresh_one() -> None:
    response = httpx.Response(401, extensions={CREDENTIAL_REFUSED: True})
    assert classify(response, POLICY, now=NOW).outcome is Outcome.REFRESH_TOKEN_THEN_RETRY


def test_retry_statuses_come_from_the_policy() -> None:
    strict = VendorPolicy(vendor="demo", retry_statuses=frozenset({503}))
    assert classify(httpx.Response(502), strict, now=NOW).outcome is Outcome.FAIL
    assert classify(httpx.Response(503), strict, now=NOW).outcome is Outcome.RETRY


request = httpx.Request("GET", "https://vendor.test/x")


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (httpx.ConnectError("refused", request=request), Outcome.RETRY),
        (httpx.ConnectTimeout("slow", request=request), Outcome.RETRY),
        (httpx.ReadTimeout("slow", request=request), Outcome.RETRY),
        (httpx.WriteTimeout("slow", request=request), Outcome.RETRY),
        (httpx.PoolTimeout("busy", request=request), Outcome.RETRY),
        (httpx.ReadError("reset by peer", request=request), Outcome.RETRY),
        (httpx.WriteError("broken pipe", request=request), Outcome.RETRY),
        (httpx.RemoteProtocolError("incomplete body", request=request), Outcome.RETRY),
        (httpx.ProxyError("proxy down", request=request), Outcome.RETRY),
        (VendorUnavailable("token endpoint down"), Outcome.RETRY),
        (VendorProtocolError("token endpoint garbage"), Outcome.RETRY),
        (VendorRateLimited("token endpoint busy", 3.0), Outcome.RATE_LIMITED),
        (httpx.UnsupportedProtocol("ftp", request=request), Outcome.FAIL),
        (httpx.LocalProtocolError("bad header", request=request), Outcome.FAIL),
        (httpx.DecodingError("bad gzip", request=request), Outcome.FAIL),
        (VendorAuthRefused("invalid_client"), Outcome.FAIL),
        (CredentialError("no such credential"), Outcome.FAIL),
        (ValueError("a bug"), Outcome.FAIL),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_errors(error: Exception, outcome: Outcome) -> None:
    verdict = classify(error, POLICY, now=NOW)
    assert verdict.outcome is outcome
    assert verdict.reason == type(error).__name__


def test_a_rate_limited_error_carries_its_wait() -> None:
    assert classify(VendorRateLimited("busy", 3.0), POLICY, now=NOW).retry_after == 3.0


def http_date(seconds_from_now: float) -> str:
    return format_datetime(NOW + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5),
        (http_date(7), 7.0), (http_date(3600), 3600.0),
        (http_date(-60), 0.0),  # in the past: go now
        ("Thu, 01 Jan 2026 00:00:07 -0000", 7.0),  # a naive zone is GMT
        ("-5", None), ("soon", None), ("", None), ("7 seconds", None), ("1e3", None),
        ("inf", None), ("nan", None), ("Thu, 99 Foo 2026 25:61:00 GMT", None), (None, None),
    ],
)  # fmt: skip
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_429_reads_retry_after_as_seconds_and_as_a_date() -> None:
    assert answer(429, {"Retry-After": "7"}).retry_after == 7.0
    assert answer(429, {"Retry-After": http_date(7)}).retry_after == 7.0
    assert answer(429, {"Retry-After": "whenever"}).retry_after is None


def test_503_with_retry_after_keeps_the_wait() -> None:
    verdict = answer(503, {"Retry-After": "30"})
    assert (verdict.outcome, verdict.retry_after) == (Outcome.RETRY, 30.0)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 45)}, 45.0),  # Unix time (GitHub)
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) - 45)}, 0.0),
        ({"RateLimit-Reset": "soon", "X-RateLimit-Reset": "9"}, 9.0),
        ({"RateLimit-Reset": "-1"}, None),
        ({}, None),
    ],
)
def test_rate_limit_reset(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_rate_limit_reset(httpx.Headers(headers), NOW) == seconds


def test_retry_after_wins_over_rate_limit_reset_and_only_429_reads_the_reset() -> None:
    assert answer(429, {"Retry-After": "3", "RateLimit-Reset": "60"}).retry_after == 3.0
    assert answer(429, {"RateLimit-Reset": "60"}).retry_after == 60.0
    assert answer(503, {"RateLimit-Reset": "60"}).retry_after is None
