"""Classify, then act (STYLE.md #5): what one vendor answer or failure means for the caller.

``classify`` turns a response or an exception into a closed ``Outcome``; every transport that acts
on it does so in a ``match`` ending in ``assert_never``, so a new outcome cannot go unhandled.

| answer | outcome |
|---|---|
| 2xx | SUCCESS |
| 401 to a request that carried the authenticator's credential | REFRESH_TOKEN_THEN_RETRY |
| 429 | RATE_LIMITED (``retry_after`` from Retry-After, else RateLimit-Reset / X-RateLimit-Reset) |
| a status in ``policy.retry_statuses`` (408, 425, 500, 502, 503, 504 by default) | RETRY |
| any other status (3xx not followed, 4xx, 501 ...) | FAIL |
| timeouts, connect errors, resets, remote protocol errors, proxy errors | RETRY |
| ``VendorRateLimited`` / ``VendorUnavailable`` raised below | RATE_LIMITED / RETRY |
| ``CircuitOpen`` / ``BulkheadFull`` raised below: the call fails fast, unsent | FAIL |
| anything else (bad URL, unsupported scheme, our own bugs) | FAIL |
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from cadastre.errors import BulkheadFull, CircuitOpen, VendorRateLimited, VendorUnavailable

if TYPE_CHECKING:
    from cadastre.gateway.policy import VendorPolicy

# Response extension AuthTransport sets on a 401 to a request it put a credential on: only then
# can a fresh credential change the answer.
CREDENTIAL_REFUSED = "cadastre.credential_refused"

_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")
# X-RateLimit-Reset is a delta in some APIs and a Unix time in others (GitHub, Twitter); no delta
# a vendor sends is anywhere near 2001-09-09 in seconds, so a value this large is a timestamp.
_EPOCH_THRESHOLD = 1_000_000_000

_RETRYABLE_ERRORS = (
    httpx.TimeoutException  # connect, read, write, pool
    | httpx.NetworkError  # connect refused, reset, broken pipe
    | httpx.RemoteProtocolError  # the peer hung up mid-answer or sent a truncated body
    | httpx.ProxyError
)


class Outcome(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REFRESH_TOKEN_THEN_RETRY = "refresh_token_then_retry"  # noqa: S105 - an outcome, not a token
    FAIL = "fail"


@dataclass(frozen=True)
class Classification:
    outcome: Outcome
    retry_after: float | None  # seconds the vendor asked us to wait, when it said so legibly
    reason: str  # e.g. "503 Service Unavailable", "ReadTimeout"; never vendor-supplied text


def classify(
    result: httpx.Response | BaseException, policy: VendorPolicy, *, now: datetime
) -> Classification:
    """``now`` is the clock's wall time, against which HTTP-date values are read."""
    if isinstance(result, httpx.Response):
        return _classify_response(result, policy, now)
    return _classify_error(result)


def _classify_response(
    response: httpx.Response, policy: VendorPolicy, now: datetime
) -> Classification:
    status = response.status_code
    # The standard phrase, not the vendor's: reasons end up in error messages.
    reason = f"{status} {httpx.codes.get_reason_phrase(status)}".rstrip()
    if response.is_success:
        return Classification(Outcome.SUCCESS, None, reason)
    if status == HTTPStatus.UNAUTHORIZED and response.extensions.get(CREDENTIAL_REFUSED):
        return Classification(Outcome.REFRESH_TOKEN_THEN_RETRY, None, reason)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        if retry_after is None:
            retry_after = parse_rate_limit_reset(response.headers, now)
        return Classification(Outcome.RATE_LIMITED, retry_after, reason)
    if status in policy.retry_statuses:
        return Classification(Outcome.RETRY, retry_after, reason)
    return Classification(Outcome.FAIL, None, reason)


def _classify_error(error: BaseException) -> Classification:
    reason = type(error).__name__
    if isinstance(error, CircuitOpen | BulkheadFull):
        # Retrying inside the call would only spin on the same refusal; the caller (a sync run's
        # own backoff, a job queue) decides when to come back.
        return Classification(Outcome.FAIL, error.retry_after, reason)
    if isinstance(error, VendorRateLimited):
        return Classification(Outcome.RATE_LIMITED, error.retry_after, reason)
    if isinstance(error, VendorUnavailable):
        return Classification(Outcome.RETRY, error.retry_after, reason)
    if isinstance(error, _RETRYABLE_ERRORS):
        return Classification(Outcome.RETRY, None, reason)
    return Classification(Outcome.FAIL, None, reason)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (a fraction is tolerated) or an
    HTTP-date. A date in the past means "now" (0.0); anything malformed is None, so the caller
    falls back to its own backoff instead of trusting a value it cannot read."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zones parse naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_rate_limit_reset(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds until the vendor's rate window resets, for a 429 without ``Retry-After``.

    Supported: ``RateLimit-Reset`` (IETF draft: delta-seconds) and ``X-RateLimit-Reset``
    (delta-seconds, or a Unix timestamp when the value is too large to be a delta).
    """
    for name in ("RateLimit-Reset", "X-RateLimit-Reset"):
        value = headers.get(name, "").strip()
        if not _DELTA_SECONDS.fullmatch(value):
            continue
        seconds = float(value)
        if not math.isfinite(seconds):
            continue
        if name == "X-RateLimit-Reset" and seconds >= _EPOCH_THRESHOLD:
            return max(0.0, seconds - now.timestamp())
        return seconds
    return None
