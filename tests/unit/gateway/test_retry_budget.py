"""The retry budget (botocore's standard mode): in a long outage retries stop once the bucket is
empty, successes earn it back, and a call that never reached the vendor costs nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cadastre.errors import VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.controls import Guards
from cadastre.gateway.retry import RetryBudget
from cadastre.testing import FakeClock

POLICY = VendorPolicy(vendor="demo", max_attempts=5, backoff_base=0.01, backoff_cap=0.1)


def gateway(clock: FakeClock, budget: RetryBudget, handler: Callable[..., Any]) -> Gateway:
    return Gateway("https://vendor.test", POLICY, clock=clock, guards=Guards(budget=budget),
                   transport=httpx.MockTransport(handler), rng=random.Random(3))  # fmt: skip


def test_the_budget_charges_retries_and_timeouts_differently_and_refunds_successes() -> None:
    budget = RetryBudget(capacity=20, retry_cost=5, timeout_cost=10, success_refund=1)
    assert budget.withdraw(after_timeout=True)
    assert budget.withdraw(after_timeout=False)
    assert budget.available == 5
    assert not budget.withdraw(after_timeout=True)  # 10 > 5
    assert budget.withdraw(after_timeout=False)
    assert not budget.withdraw(after_timeout=False)
    assert (budget.retries, budget.refused) == (3, 2)
    for _ in range(30):
        budget.deposit()
    assert budget.available == 20  # never above capacity


def test_a_budget_must_cost_something() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryBudget(retry_cost=0)


async def test_a_total_outage_spends_at_most_the_budget_on_retries() -> None:
    """Ten minutes of 503s: 600 calls would make 2,400 retries without a budget."""
    clock = FakeClock(autojump=True)
    budget = RetryBudget()  # 500 / 5 / 10 / 1
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(503)

    async with gateway(clock, budget, handler) as gw:
        for _ in range(600):
            with pytest.raises(VendorUnavailable):
                await gw.get("Property")
            await clock.sleep(1.0)
    retries = sent - 600
    assert retries == budget.retries
    assert retries <= 500 // 5
    assert budget.refused > 0


async def test_successes_earn_retries_back() -> None:
    clock = FakeClock(autojump=True)
    budget = RetryBudget(capacity=10, retry_cost=5, success_refund=1)
    answers = iter([503, 200] * 50)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers))

    async with gateway(clock, budget, handler) as gw:
        served = failed = 0
        for _ in range(50):
            try:
                await gw.get("Property")
                served += 1
            except VendorUnavailable:
                failed += 1  # its retry was not in the budget
    # Every call wanted one retry at 5; the bucket held 10 and each success paid 1 back.
    assert failed == budget.refused > 0
    assert budget.retries <= (10 + served) // 5
    assert served + failed == 50


async def test_calls_that_never_reached_the_vendor_cost_nothing() -> None:
    clock = FakeClock(autojump=True)
    budget = RetryBudget(capacity=5, retry_cost=5)
    failures = iter([True, True, False])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(failures):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    async with gateway(clock, budget, handler) as gw:
        await gw.get("Property")
    assert budget.available == 5
