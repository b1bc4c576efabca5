"""The QuickBooks Online simulator over real HTTP on loopback, on a fake clock: refresh tokens
rotate as Intuit's do; a stale SyncToken is refused with fault 5010; a repeated requestid is
answered with the stored original and has no second effect; CDC holds at most its limit (oldest
first), lists deletions and refuses more than 30 days back; 429s per minute per realm and per
second per realm and app; webhooks are signed as the project's ``quickbooks`` verifier checks,
retried on Intuit's schedule with later ones held behind a failing one; admin faults lose an
applied write's answer; the process form starts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.ports import Secret
from cadastre.simulators import serve, spawn
from cadastre.simulators.quickbooks import INTUIT_SCHEDULE, QuickBooksSimulator
from cadastre.testing import FakeClock
from cadastre.webhooks.settings import Scheme
from cadastre.webhooks.settings import WebhookSettings as HubWebhookSettings
from cadastre.webhooks.verify import QuickBooks as QuickBooksVerifier

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
REALM = "9341453050298464"
COMPANY = f"/v3/company/{REALM}"
BASIC = "Basic " + base64.b64encode(b"qbo-client:qbo-secret").decode()
TOKEN = "verifier-token-0123456789"


@dataclass
class Running:
    sim: QuickBooksSimulator
    clock: FakeClock
    client: httpx.AsyncClient
    url: str

    async def grant(self) -> dict[str, Any]:
        answer = await self.client.post("/admin/oauth/grant", json={})
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    async def authed(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.grant())['access_token']}"}

    async def refresh(self, token: str) -> httpx.Response:
        return await self.client.post(
            "/oauth2/v1/tokens/bearer",
            content=f"grant_type=refresh_token&refresh_token={token}",
            headers={"Authorization": BASIC, "Content-Type": "application/x-www-form-urlencoded"},
        )


@pytest.fixture
async def qbo() -> AsyncIterator[Running]:
    clock = FakeClock(NOW)
    sim = QuickBooksSimulator(clock=clock)
    async with serve(sim.app) as up, httpx.AsyncClient(base_url=up.url) as client:
        yield Running(sim, clock, client, up.url)
        await sim.webhooks.stop()


async def test_refresh_tokens_rotate_once_a_day_and_the_old_one_lives_until_the_new_is_used(
    qbo: Running,
) -> None:
    first = (await qbo.grant())["refresh_token"]
    same = await qbo.refresh(first)
    assert same.status_code == 200
    assert same.json()["refresh_token"] == first  # within the day: no new token
    assert same.json()["expires_in"] == 3600
    qbo.clock.advance(86400)
    rotated = (await qbo.refresh(first)).json()["refresh_token"]
    assert rotated != first
    again = await qbo.refresh(first)  # the answer was lost: the old one still works...
    assert again.status_code == 200
    assert again.json()["refresh_token"] == rotated  # ...and hands out the newer one
    assert (await qbo.refresh(rotated)).status_code == 200  # the new one is used:
    dead = await qbo.refresh(first)  # the old one is dead now
    assert dead.status_code == 400
    assert dead.json()["error"] == "invalid_grant"
    unknown = await qbo.refresh("RT1-never-issued")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")
    assert qbo.sim.oauth.stats.rotations == 1
    grant = qbo.sim.oauth._grants[-1]
    assert grant.current == rotated
    assert rotated not in repr(grant)  # a grant shown in a log or a failed assert hides tokens
    no_basic = await qbo.client.post(
        "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": rotated}
    )
    assert (no_basic.status_code, no_basic.json()["error"]) == (401, "invalid_client")


async def test_access_tokens_last_an_hour_on_the_simulator_clock(qbo: Running) -> None:
    headers = await qbo.authed()
    assert (await qbo.client.get(f"{COMPANY}/account/1", headers=headers)).status_code == 200
    qbo.clock.advance(3600)
    expired = await qbo.client.get(f"{COMPANY}/account/1", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["Fault"]["type"] == "AuthenticationFault"
    assert expired.headers["intuit_tid"]
    other = await qbo.client.get("/v3/company/123/account/1", headers=await qbo.authed())
    assert other.status_code == 403


async def test_a_stale_synctoken_is_refused_with_fault_5010(qbo: Running) -> None:
    headers = await qbo.authed()
    made = await qbo.client.post(
        f"{COMPANY}/account", headers=headers, json={"Name": "Pet Fees", "AccountType": "Income"}
    )
    account = made.json()["Account"]
    assert (account["SyncToken"], account["Classification"]) == ("0", "Revenue")
    update = {"Id": account["Id"], "SyncToken": "0", "sparse": True, "AcctNum": "4100"}
    first = await qbo.client.post(f"{COMPANY}/account", headers=headers, json=update)
    assert first.json()["Account"]["SyncToken"] == "1"
    assert first.json()["Account"]["Name"] == "Pet Fees"  # sparse: the rest kept
    stale = await qbo.client.post(
        f"{COMPANY}/account", headers=headers, json={**update, "AcctNum": "4200"}
    )
    assert stale.status_code == 400
    fault = stale.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    assert fault["Error"][0]["code"] == "5010"
    assert fault["Error"][0]["Message"] == "Stale Object Error"
    assert "time" in stale.json()
    assert qbo.sim.get("Account", account["Id"])["AcctNum"] == "4100"  # type: ignore[index]
    assert qbo.sim.stats.stale_refusals == 1
    no_token = await qbo.client.post(
        f"{COMPANY}/account", headers=headers, json={"Id": account["Id"], "sparse": True}
    )
    assert no_token.json()["Fault"]["Error"][0]["code"] == "2020"


async def test_a_repeated_requestid_is_answered_with_the_original_and_no_second_effect(
    qbo: Running,
) -> None:
    headers = await qbo.authed()
    body = {"CustomerRef": {"value": "6"}, "TotalAmt": 125.5, "TxnDate": "2026-11-27"}
    url = f"{COMPANY}/payment?requestid=pay-key-1&minorversion=75"
    first = await qbo.client.post(url, headers=headers, json=body)
    qbo.clock.advance(5)
    second = await qbo.client.post(url, headers=headers, json=body)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content  # the stored answer, time and all
    payments = [
        p for p in qbo.sim.companies[REALM].objects["Payment"].values() if p["TotalAmt"] == 125.5
    ]
    assert len(payments) == 1
    stats = (await qbo.client.get("/admin/stats")).json()
    assert stats["creates_by_requestid"] == {"pay-key-1": 1}
    assert list(stats["creates_by_logical_write"].values()) == [1]
    assert stats["replays"] == 1
    too_long = await qbo.client.post(
        f"{COMPANY}/payment?requestid={'x' * 51}", headers=headers, json=body
    )
    assert too_long.status_code == 400


async def test_transactions_are_deleted_and_name_lists_only_deactivated(qbo: Running) -> None:
    headers = await qbo.authed()
    payment = qbo.sim.companies[REALM].objects["Payment"]["8"]
    gone = await qbo.client.post(
        f"{COMPANY}/payment?operation=delete",
        headers=headers,
        json={"Id": "8", "SyncToken": payment["SyncToken"]},
    )
    assert gone.json()["Payment"] == {"domain": "QBO", "status": "Deleted", "Id": "8"}
    missing = await qbo.client.get(f"{COMPANY}/payment/8", headers=headers)
    assert missing.json()["Fault"]["Error"][0]["code"] == "610"
    refused = await qbo.client.post(
        f"{COMPANY}/account?operation=delete", headers=headers, json={"Id": "1", "SyncToken": "0"}
    )
    assert refused.status_code == 400
    assert refused.json()["Fault"]["Error"][0]["Detail"] == "Operation Delete is not supported."
    off = await qbo.client.post(
        f"{COMPANY}/account",
        headers=headers,
        json={"Id": "1", "SyncToken": "0", "sparse": True, "Active": False},
    )
    assert off.json()["Account"]["Active"] is False
    listed = await qbo.client.get(
        f"{COMPANY}/query", headers=headers, params={"query": "select * from Account"}
    )
    assert "1" not in [a["Id"] for a in listed.json()["QueryResponse"]["Account"]]
    every = await qbo.client.get(
        f"{COMPANY}/query",
        headers=headers,
        params={"query": "select * from Account where Active in (true, false) orderby Id"},
    )
    assert every.json()["QueryResponse"]["Account"][0]["Id"] == "1"
    ored = await qbo.client.get(
        f"{COMPANY}/query",
        headers=headers,
        params={"query": "select * from Account where Id = '1' or Id = '2'"},
    )
    assert ored.json()["Fault"]["Error"][0]["code"] == "4000"


async def test_cdc_holds_at_most_its_limit_lists_deletions_and_reaches_30_days_back(
    qbo: Running,
) -> None:
    headers = await qbo.authed()
    qbo.sim.cdc_max = 3
    start = qbo.clock.now()
    for n in range(4):
        qbo.clock.advance(1)
        qbo.sim.ui_edit("Account", "create", {"Name": f"Unit {n}", "AccountType": "Expense"})
    qbo.clock.advance(1)
    qbo.sim.ui_edit("Payment", "delete", {}, object_id="8")
    since = start.isoformat()
    answer = await qbo.client.get(
        f"{COMPANY}/cdc",
        headers=headers,
        params={"entities": "Account,Payment", "changedSince": since},
    )
    body = answer.json()
    responses = body["CDCResponse"][0]["QueryResponse"]
    accounts = next(r["Account"] for r in responses if "Account" in r)
    assert [a["Name"] for a in accounts] == ["Unit 0", "Unit 1", "Unit 2"]  # oldest 3 only
    assert not any("Payment" in r for r in responses)  # the deletion was past the limit
    qbo.sim.cdc_max = 1000
    later = await qbo.client.get(
        f"{COMPANY}/cdc", headers=headers, params={"entities": "Payment", "changedSince": since}
    )
    payments = later.json()["CDCResponse"][0]["QueryResponse"][0]["Payment"]
    assert payments[0]["status"] == "Deleted"
    assert payments[0]["Id"] == "8"
    assert later.json()["time"].endswith("-08:00")
    old = (qbo.clock.now() - timedelta(days=30, seconds=1)).isoformat()
    refused = await qbo.client.get(
        f"{COMPANY}/cdc", headers=headers, params={"entities": "Account", "changedSince": old}
    )
    assert refused.status_code == 400
    assert refused.json()["Fault"]["Error"][0]["element"] == "changedSince"


async def test_429_past_ten_a_second_per_app_and_five_hundred_a_minute_per_realm(
    qbo: Running,
) -> None:
    headers = await qbo.authed()
    url = f"{COMPANY}/account/1"
    answers = [(await qbo.client.get(url, headers=headers)).status_code for _ in range(11)]
    assert answers == [200] * 10 + [429]
    qbo.clock.advance(1)
    assert (await qbo.client.get(url, headers=headers)).status_code == 200
    for _ in range(489):  # 500 in the minute, 9 a second
        qbo.clock.advance(0.111)
        assert (await qbo.client.get(url, headers=headers)).status_code == 200
    qbo.clock.advance(0.111)
    throttled = await qbo.client.get(url, headers=headers)
    assert throttled.status_code == 429
    fault = throttled.json()["Fault"]["Error"][0]
    assert "ThrottleExceeded" in fault["Message"]
    assert "Wait 60 seconds" in fault["Detail"]
    assert "Retry-After" not in throttled.headers
    assert qbo.sim.stats.throttled == {"per_second": 1, "per_minute": 1}
    assert qbo.sim.stats.rate_limit_violations == 2


@dataclass
class Hook:
    url: str = ""
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers in turn, then 200
    delay: float = 0.0

    async def endpoint(self, request: Request) -> Response:
        self.got.append((await request.body(), dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(status_code=status)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    catcher = Hook()
    app = Starlette(routes=[Route("/", catcher.endpoint, methods=["POST"])])
    async with serve(app) as up:
        catcher.url = f"{up.url}/"
        yield catcher


async def _until(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_webhooks_are_signed_for_the_quickbooks_verifier_and_retried_on_the_clock(
    qbo: Running, hook: Hook
) -> None:
    configured = await qbo.client.post(
        "/admin/webhooks", json={"url": hook.url, "verifier_token": TOKEN}
    )
    assert configured.json()["subscription"]["verifier_token"] == "***"
    hook.statuses = [500, 503]
    qbo.sim.ui_edit("Account", "update", {"Name": "Rent Income"}, object_id="4")
    qbo.sim.ui_edit("Payment", "delete", {}, object_id="8")
    await _until(lambda: len(hook.got) == 1, "the first attempt")
    qbo.clock.advance(INTUIT_SCHEDULE[0] - 1)
    await asyncio.sleep(0.05)
    assert len(hook.got) == 1  # not before 10 s, and the delete waits behind it
    qbo.clock.advance(1)
    await _until(lambda: len(hook.got) == 2, "the retry after 10 s")
    qbo.clock.advance(INTUIT_SCHEDULE[1])
    await _until(lambda: len(hook.got) == 4, "the third attempt and then the next event")
    bodies = [orjson.loads(body) for body, _ in hook.got]
    assert bodies[0] == bodies[2]  # the same notification, retried
    event = bodies[0][0]
    assert event["specversion"] == "1.0"
    assert event["type"] == "qbo.account.updated.v1"
    assert (event["intuitentityid"], event["intuitaccountid"]) == ("4", REALM)
    assert bodies[3][0]["type"] == "qbo.payment.deleted.v1"
    verifier = QuickBooksVerifier(
        HubWebhookSettings(scheme=Scheme.QUICKBOOKS, credential="qbo-hooks")
    )
    for body, headers in hook.got:
        verifier.check_headers(headers, qbo.clock.now())
        assert verifier.verify("POST", hook.url, headers, body, [Secret(TOKEN)])
    assert qbo.sim.webhooks.stats.retried == 2
    assert qbo.sim.stats.ui_edits == 2
    assert qbo.sim.stats.api_writes == 0


async def test_an_answer_slower_than_three_seconds_counts_as_a_failure(
    qbo: Running, hook: Hook
) -> None:
    await qbo.client.post(
        "/admin/webhooks",
        json={
            "url": hook.url,
            "verifier_token": TOKEN,
            "timeout": 0.2,
            "retry_schedule": [],
            "extra_retries": 0,
            "payload": "legacy",
        },
    )
    hook.delay = 0.5
    qbo.sim.ui_edit("Account", "update", {"Name": "Slow"}, object_id="4")
    await qbo.sim.webhooks.drain()
    assert qbo.sim.webhooks.stats.too_slow == 1
    assert qbo.sim.webhooks.stats.failed == 1
    legacy = orjson.loads(hook.got[0][0])
    entity = legacy["eventNotifications"][0]["dataChangeEvent"]["entities"][0]
    assert (entity["name"], entity["id"], entity["operation"]) == ("Account", "4", "Update")


async def test_webhook_drops_duplicates_and_reordering_on_purpose(qbo: Running, hook: Hook) -> None:
    await qbo.client.post(
        "/admin/webhooks",
        json={"url": hook.url, "verifier_token": TOKEN, "hold": True, "duplicate_rate": 1.0},
    )
    for name in ("A", "B"):
        qbo.sim.ui_edit("Account", "create", {"Name": name, "AccountType": "Expense"})
    released = await qbo.client.post("/admin/webhooks/release", json={"order": "reverse"})
    assert released.json() == {"released": 4}
    await qbo.sim.webhooks.drain()
    ids = [orjson.loads(body)[0]["intuitentityid"] for body, _ in hook.got]
    assert ids == ["22", "22", "21", "21"]  # reversed, each twice (new CloudEvents ids)
    assert len({orjson.loads(body)[0]["id"] for body, _ in hook.got}) == 4


async def test_a_lost_answer_is_applied_and_a_resend_with_its_requestid_replays(
    qbo: Running,
) -> None:
    headers = await qbo.authed()
    assert (
        await qbo.client.post("/admin/fail-writes", json={"count": 1, "mode": "lost"})
    ).status_code == 200
    body = {"Name": "Lost And Found", "AccountType": "Expense"}
    url = f"{COMPANY}/account?requestid=acct-1"
    with pytest.raises(httpx.RemoteProtocolError):
        await qbo.client.post(url, headers=headers, json=body)
    again = await qbo.client.post(url, headers=headers, json=body)
    assert again.status_code == 200
    assert qbo.sim.stats.creates == 1
    assert qbo.sim.stats.writes_lost == 1
    await qbo.client.post("/admin/fail-writes", json={"count": 1, "mode": "error"})
    failed = await qbo.client.post(
        f"{COMPANY}/account?requestid=acct-2",
        headers=headers,
        json={"Name": "Never", "AccountType": "Expense"},
    )
    assert failed.status_code == 500
    assert not any(
        a["Name"] == "Never" for a in qbo.sim.companies[REALM].objects["Account"].values()
    )
    bad = await qbo.client.post("/admin/fail-writes", json={"mode": "sometimes"})
    assert bad.status_code == 400


def test_the_process_form_starts_and_its_clock_moves() -> None:
    with spawn("quickbooks", "--rotate-after", "0") as url:
        granted = httpx.post(f"{url}/admin/oauth/grant", json={}).json()
        moved = httpx.post(f"{url}/admin/clock", json={"advance": 7200}).json()
        assert moved["now"]
        expired = httpx.get(
            f"{url}{COMPANY}/account/1",
            headers={"Authorization": f"Bearer {granted['access_token']}"},
        )
        assert expired.status_code == 401
