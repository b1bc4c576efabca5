"""The outermost layer of the vendor chain: try a call again when that is both useful and safe.

Rules (RELIABILITY.md #7, #8):
- Waits are capped exponential backoff with Full Jitter: the n-th retry (from 0) sleeps
  ``uniform(0, min(backoff_cap, backoff_base * 2**n))`` on the injected clock.
- A vendor's ``Retry-After`` (or rate-limit reset) is a floor: the wait is never shorter. One longer
  than ``policy.retry_after_cap`` is not slept at all: the 429 goes back to the caller at once.
- Only GET, HEAD, OPTIONS, PUT and DELETE, or a request with an ``Idempotency-Key`` header, is sent
  twice. Other requests are resent only when the first one provably never left (a connect error,
  or a failure raised by a layer below before sending) or was refused for its credential (401).
- 4xx other than 408, 425 and 429 are never retried (``classify`` calls them FAIL).
- ``policy.total`` is a deadline on ``clock.monotonic()`` for the whole call: no wait is started
  that would end past it, and each attempt's timeouts are cut to the time left. The deadline
  travels in the request's extensions, so the rate limiter below waits no longer than it either.
- Retries spend a ``RetryBudget`` per connection (botocore's standard mode: a bucket of 500, a
  retry costs 5, one after a timeout 10, a success pays 1 back): in a long outage retries stop
  after the bucket is empty, and in steady state they stay a fixed share of successful traffic.

When it gives up, it returns the last response (read and closed) or raises the last error, as any
httpx transport would; ``Gateway`` maps that to Cadastre's errors.

Written by hand rather than with tenacity: the wait depends on the answer (Retry-After), the stop
rule compares the upcoming wait with a deadline on an injected clock, giving up hands back the last
answer instead of a RetryError, and the retry safety depends on both the request and the failure.
In tenacity each of those is a separate hook over shared state; here it is one loop.
"""

from __future__ import annotations

import logging
import random
from http import HTTPStatus
from typing import TYPE_CHECKING, assert_never

import httpx

from cadastre.errors import VendorError
from cadastre.gateway.outcome import Classification, Outcome, classify
from cadastre.gateway.ratelimit import DEADLINE
from cadastre.gateway.records import TRACE

if TYPE_CHECKING:
    from cadastre.gateway.policy import VendorPolicy
    from cadastre.ports import Clock

log = logging.getLogger(__name__)


class RetryBudget:
    """Retries may never become most of the traffic (botocore's ``RetryQuotaChecker``)."""

    def __init__(
        self,
        capacity: int = 500,
        retry_cost: int = 5,
        timeout_cost: int = 10,
        success_refund: int = 1,
    ) -> None:
        if min(capacity, retry_cost, timeout_cost) < 1 or success_refund < 0:
            raise ValueError("retry budget amounts are positive")
        self.capacity = capacity
        self._retry_cost = retry_cost
        self._timeout_cost = timeout_cost
        self._refund = success_refund
        self.available = capacity
        self.retries = 0  # granted
        self.refused = 0  # retries the budget did not allow

    def withdraw(self, after_timeout: bool) -> bool:
        cost = self._timeout_cost if after_timeout else self._retry_cost
        if cost > self.available:
            self.refused += 1
            return False
        self.available -= cost
        self.retries += 1
        return True

    def deposit(self) -> None:
        self.available = min(self.capacity, self.available + self._refund)


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_KEY = "Idempotency-Key"
ATTEMPTS = "cadastre.attempts"  # response extension: how many attempts the final answer took

_Result = httpx.Response | Exception


def backoff_ceiling(policy: VendorPolicy, retry: int) -> float:
    """Upper bound of the wait before retry number ``retry`` (0 for the first retry)."""
    # the exponent is bounded so a large attempt count cannot overflow a float
    return min(policy.backoff_cap, policy.backoff_base * 2.0 ** min(retry, 64))


class RetryTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        next: httpx.AsyncBaseTransport,
        policy: VendorPolicy,
        clock: Clock,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self._next = next
        self._policy = policy
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter spreads load; it guards nothing
        self._budget = budget

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy, clock = self._policy, self._clock
        deadline = clock.monotonic() + policy.total
        request.extensions[DEADLINE] = deadline
        resendable = request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY in request.headers
        # A streamed body can be sent only once; buffer it so any permitted resend is whole.
        await request.aread()
        attempts = 0
        refreshed = False
        while True:
            _limit_timeouts(request, policy, deadline - clock.monotonic())
            attempts += 1
            record = request.extensions.get(TRACE)
            if record is not None:
                record.attempts = attempts
            result = await self._attempt(request)
            verdict = classify(result, policy, now=clock.now())
            wait: float | None = None
            match verdict.outcome:
                case Outcome.SUCCESS:
                    if self._budget is not None:
                        self._budget.deposit()
                    return _answer(result, attempts)
                case Outcome.FAIL:
                    why = verdict.reason
                case Outcome.REFRESH_TOKEN_THEN_RETRY:
                    # The vendor did not act on a refused request, so any method may go again,
                    # at once and once: a second refusal of a fresh credential is the answer.
                    why = "credential refused twice" if refreshed else "credential refused"
                    wait = None if refreshed else 0.0
                    refreshed = True
                case Outcome.RETRY | Outcome.RATE_LIMITED:
                    wait, why = self._backoff(result, verdict, resendable, attempts - refreshed)
                    if wait is not None and not self._spend(result):
                        wait, why = None, f"{verdict.reason}; the retry budget is spent"
                case _:
                    assert_never(verdict.outcome)
            if wait is not None and clock.monotonic() + wait >= deadline:
                wait, why = (
                    None,
                    f"{verdict.reason}; waiting would pass the {policy.total:g} s deadline",
                )
            if wait is None:
                log.debug(
                    "vendor %s: %s %s: giving up: %s",
                    policy.vendor, request.method, request.url.path, why,
                )  # fmt: skip
                return _answer(result, attempts)
            log.debug(
                "vendor %s: %s %s: %s on attempt %d; retrying in %.3f s",
                policy.vendor, request.method, request.url.path, verdict.reason, attempts, wait,
            )  # fmt: skip
            if isinstance(result, httpx.Response):
                await result.aclose()
            await clock.sleep(wait)

    def _backoff(
        self, result: _Result, verdict: Classification, resendable: bool, attempts: int
    ) -> tuple[float | None, str]:
        """The wait before the next attempt, or None and why there is none."""
        policy = self._policy
        if not (resendable or _never_sent(result)):
            return None, f"{verdict.reason}; not idempotent and it may have been acted on"
        if attempts >= policy.max_attempts:
            return None, f"{verdict.reason} after {attempts} attempts"
        if (
            verdict.outcome is Outcome.RATE_LIMITED
            and HTTPStatus.TOO_MANY_REQUESTS not in policy.retry_statuses
        ):
            return None, f"{verdict.reason}; 429 is not retried for this vendor"
        floor = verdict.retry_after or 0.0
        if floor > policy.retry_after_cap:
            return None, f"{verdict.reason}; retry after {floor:g} s is over the cap"
        jitter = self._rng.uniform(0.0, backoff_ceiling(policy, attempts - 1))
        return max(jitter, floor), verdict.reason

    def _spend(self, result: _Result) -> bool:
        if self._budget is None or _never_sent(result):
            return True  # a call that never reached the vendor costs it nothing to try again
        return self._budget.withdraw(after_timeout=isinstance(result, httpx.TimeoutException))

    async def _attempt(self, request: httpx.Request) -> _Result:
        try:
            response = await self._next.handle_async_request(request)
        except Exception as error:  # noqa: BLE001 - classified by the caller; unknown ones re-raised
            return error
        try:
            # An attempt ends when its body is in: a reset or a timeout mid-body is then retried
            # like any other failure, and a fully read answer frees its pooled connection.
            await response.aread()
        except Exception as error:  # noqa: BLE001 - as above
            await response.aclose()
            return error
        return response

    async def aclose(self) -> None:
        await self._next.aclose()


def _never_sent(result: _Result) -> bool:
    # These fail before a byte of the request is written, so a resend cannot repeat its effect.
    # A VendorError from inside the chain comes from a layer below retry (the token step now; the
    # breaker and rate limiter next), which refuses before sending.
    return isinstance(
        result, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | VendorError
    )


def _limit_timeouts(request: httpx.Request, policy: VendorPolicy, remaining: float) -> None:
    # The deadline bounds each attempt too: a hang on the last attempt must not outlive the call.
    asked = request.extensions.get("timeout") or {}
    defaults = {"connect": policy.connect, "read": policy.read, "write": policy.read,
                "pool": policy.connect}  # fmt: skip
    request.extensions["timeout"] = {
        name: max(0.0, min(default if asked.get(name) is None else asked[name], remaining))
        for name, default in defaults.items()
    }


def _answer(result: _Result, attempts: int) -> httpx.Response:
    if isinstance(result, httpx.Response):
        result.extensions[ATTEMPTS] = attempts
        return result
    raise result
