"""The HubSpot simulator over real HTTP on loopback, on a fake clock: OAuth with non-rotating
refresh tokens, list paging by ``after``, search and its 10,000-result cap, the two rate limits
and their 429 body, archive and restore, merges (the merged id answers as the survivor), webhook
batches signed v3 (checked with the hub's own verifier), their retries on the clock, and the
write faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.errors import WebhookRefused
from cadastre.ports import Secret
from cadastre.simulators import serve
from cadastre.simulators.hubspot import HubSpotSimulator
from cadastre.testing import FakeClock
from cadastre.webhooks.settings import Scheme, WebhookSettings
from cadastre.webhooks.verify import verifier

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SECRET = "demo-secret"


@dataclass
class Running:
    sim: HubSpotSimulator
    client: httpx.AsyncClient
    clock: FakeClock
    url: str

    async def token(self) -> dict[str, str]:
        grant = (await self.client.post("/admin/oauth/grant")).json()
        return {"Authorization": f"Bearer {grant['access_token']}"}


@pytest.fixture
async def hs() -> AsyncIterator[Running]:
    clock = FakeClock(NOW)
    sim = HubSpotSimulator(clock=clock, contacts=25, deals=3)
    async with serve(sim.app) as up, httpx.AsyncClient(base_url=up.url) as client:
        yield Running(sim, client, clock, up.url)
        await sim.webhooks.stop()


async def test_oauth_code_exchange_refresh_and_expiry(hs: Running) -> None:
    c = hs.client
    code = (await c.post("/admin/oauth/code", json={"redirect_uri": "http://127.0.0.1/cb"})).json()
    form = {"grant_type": "authorization_code", "client_id": "demo-client",
            "client_secret": SECRET, "redirect_uri": "http://127.0.0.1/cb",
            "code": code["code"]}  # fmt: skip
    first = await c.post("/oauth/v1/token", data=form)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 1800
    again = await c.post("/oauth/v1/token", data=form)  # a code is single-use
    assert again.status_code == 400
    assert again.json()["status"] == "BAD_AUTH_CODE"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await c.get("/crm/v3/objects/contacts", headers=bearer)).status_code == 200
    hs.clock.advance(1800)  # the access token dies on the simulator clock
    expired = await c.get("/crm/v3/objects/contacts", headers=bearer)
    assert expired.status_code == 401
    assert expired.json()["category"] == "INVALID_AUTHENTICATION"
    refresh = {"grant_type": "refresh_token", "client_id": "demo-client",
               "client_secret": SECRET, "refresh_token": tokens["refresh_token"]}  # fmt: skip
    for _ in range(2):  # refresh tokens do not rotate: the same one works again and comes back
        renewed = await c.post("/oauth/v1/token", data=refresh)
        assert renewed.status_code == 200
        assert renewed.json()["refresh_token"] == tokens["refresh_token"]
    bearer = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert (await c.get("/crm/v3/objects/contacts", headers=bearer)).status_code == 200
    bad = await c.post("/oauth/v1/token", data={**refresh, "refresh_token": "nope"})
    assert (bad.status_code, bad.json()["status"]) == (400, "BAD_REFRESH_TOKEN")
    wrong = await c.post("/oauth/v1/token", data={**refresh, "client_secret": "x"})
    assert wrong.json()["status"] == "BAD_CLIENT_SECRET"


async def test_list_pages_by_after_and_refuses_a_limit_over_100(hs: Running) -> None:
    bearer = await hs.token()
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 10}
    pages = 0
    while True:
        page = (await hs.client.get("/crm/v3/objects/contacts", params=params,
                                    headers=bearer)).json()  # fmt: skip
        pages += 1
        seen += [r["id"] for r in page["results"]]
        assert set(page["results"][0]["properties"]) >= {"hs_object_id", "lastmodifieddate"}
        following = page.get("paging", {}).get("next")
        if following is None:
            break
        assert "after=" in following["link"]
        params = {"limit": 10, "after": following["after"]}
    assert pages == 3
    assert seen == sorted(seen, key=int)
    assert len(seen) == len(set(seen)) == 25
    refused = await hs.client.get("/crm/v3/objects/contacts", params={"limit": 101},
                                  headers=bearer)  # fmt: skip
    assert refused.status_code == 400
    body = refused.json()
    assert body["status"] == "error"
    assert body["category"] == "VALIDATION_ERROR"
    assert body["correlationId"]


async def test_search_filters_on_last_modified_and_stops_at_10000(hs: Running) -> None:
    bearer = await hs.token()
    hs.sim.search_limit = None
    hs.clock.advance(60)
    edited = [hs.sim.ui_edit("contacts", i, {"jobtitle": "agent"}).id for i in ("1003", "1007")]
    since = int(hs.clock.now().timestamp() * 1000) - 1000
    body = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate",
                                           "operator": "GTE", "value": str(since)}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]}  # fmt: skip
    found = (await hs.client.post("/crm/v3/objects/contacts/search", json=body,
                                  headers=bearer)).json()  # fmt: skip
    assert found["total"] == 2
    assert [r["id"] for r in found["results"]] == edited
    too_big = await hs.client.post("/crm/v3/objects/contacts/search", json={"limit": 201},
                                   headers=bearer)  # fmt: skip
    assert too_big.status_code == 400
    hs.sim.api_limit = None
    from cadastre.simulators.hubspot import seed

    seed(hs.sim, contacts=10_000)
    deep = {"limit": 200, "after": "9800"}
    page = (await hs.client.post("/crm/v3/objects/contacts/search", json=deep,
                                 headers=bearer)).json()  # fmt: skip
    assert page["total"] == 10_025
    assert page["paging"]["next"]["after"] == "10000"
    past = await hs.client.post("/crm/v3/objects/contacts/search",
                                json={"limit": 200, "after": "10000"}, headers=bearer)  # fmt: skip
    assert past.status_code == 400
    assert "10000" in past.json()["message"]


async def test_rate_limits_answer_hubspots_429_and_count_violations(hs: Running) -> None:
    bearer = await hs.token()
    answers = [await hs.client.get("/crm/v3/objects/deals", headers=bearer) for _ in range(100)]
    assert {a.status_code for a in answers} == {200}
    assert answers[-1].headers["X-HubSpot-RateLimit-Max"] == "100"
    assert answers[-1].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answers[-1].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    over = await hs.client.get("/crm/v3/objects/deals", headers=bearer)
    assert over.status_code == 429
    assert over.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert over.json()["errorType"] == "RATE_LIMIT"
    hs.clock.advance(10)  # a rolling window: ten seconds on, the budget is back
    searches = [await hs.client.post("/crm/v3/objects/deals/search", json={}, headers=bearer)
                for _ in range(5)]  # fmt: skip
    assert [s.status_code for s in searches] == [200, 200, 200, 200, 429]
    assert searches[-1].json()["policyName"] == "SECONDLY"
    stats = (await hs.client.get("/admin/stats")).json()
    assert stats["rate_limit_violations"] == 2
    assert stats["violations_by_policy"] == {"TEN_SECONDLY_ROLLING": 1, "SECONDLY": 1}


async def test_delete_archives_and_the_ui_restores(hs: Running) -> None:
    bearer = await hs.token()
    c = hs.client
    assert (await c.delete("/crm/v3/objects/contacts/1004", headers=bearer)).status_code == 204
    gone = await c.get("/crm/v3/objects/contacts/1004", headers=bearer)
    assert (gone.status_code, gone.json()["category"]) == (404, "OBJECT_NOT_FOUND")
    archived = await c.get("/crm/v3/objects/contacts/1004", params={"archived": "true"},
                           headers=bearer)  # fmt: skip
    assert archived.json()["archived"] is True
    listed = (await c.get("/crm/v3/objects/contacts", params={"archived": "true"},
                          headers=bearer)).json()  # fmt: skip
    assert [r["id"] for r in listed["results"]] == ["1004"]
    await c.post("/admin/ui/restore", json={"type": "contacts", "id": "1004"})
    back = await c.get("/crm/v3/objects/contacts/1004", headers=bearer)
    assert back.json()["archived"] is False


async def test_a_merged_id_answers_as_the_survivor(hs: Running) -> None:
    bearer = await hs.token()
    c = hs.client
    merged = await c.post("/crm/v3/objects/contacts/merge", headers=bearer,
                          json={"primaryObjectId": "1001", "objectIdToMerge": "1002"})  # fmt: skip
    assert merged.status_code == 200
    assert merged.json()["id"] == "1001"
    old = await c.get("/crm/v3/objects/contacts/1002",
                      params={"properties": "hs_merged_object_ids"}, headers=bearer)  # fmt: skip
    assert old.status_code == 200
    assert old.json()["id"] == "1001"
    assert old.json()["properties"]["hs_merged_object_ids"] == "1002"
    patched = await c.patch("/crm/v3/objects/contacts/1002", headers=bearer,
                            json={"properties": {"jobtitle": "broker"}})  # fmt: skip
    assert patched.json()["id"] == "1001"
    assert hs.sim.get("contacts", "1001").properties["jobtitle"] == "broker"
    ids = [r["id"] for r in (await c.get("/crm/v3/objects/contacts", params={"limit": 100},
                                         headers=bearer)).json()["results"]]  # fmt: skip
    assert "1002" not in ids
    assert len(ids) == 24


async def test_a_merge_may_make_a_new_record_both_old_ids_answer_as(hs: Running) -> None:
    hs.sim.merge_new_id = True  # HubSpot's current merges
    emails = [hs.sim.get("contacts", i).properties["email"] for i in ("1001", "1002")]
    bearer = await hs.token()
    c = hs.client
    merged = await c.post("/crm/v3/objects/contacts/merge", headers=bearer,
                          json={"primaryObjectId": "1001", "objectIdToMerge": "1002"})  # fmt: skip
    new_id = merged.json()["id"]
    assert new_id not in ("1001", "1002")
    for old in ("1001", "1002"):
        got = await c.get(f"/crm/v3/objects/contacts/{old}",
                          params={"properties": "hs_merged_object_ids"},
                          headers=bearer)  # fmt: skip
        assert got.json()["id"] == new_id
        assert got.json()["properties"]["hs_merged_object_ids"] == "1001;1002"
    made = hs.sim.get("contacts", new_id)
    assert made.properties["email"] == emails[0]  # the primary's values first
    assert made.properties["hs_additional_emails"] == emails[1]
    assert hs.sim.objects.by_email(emails[0] or "") is made
    ids = [r["id"] for r in (await c.get("/crm/v3/objects/contacts", params={"limit": 100},
                                         headers=bearer)).json()["results"]]  # fmt: skip
    assert new_id in ids
    assert not {"1001", "1002"} & set(ids)
    assert len(ids) == 24


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 204
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    during: Any = None  # called with each request's number before it is answered

    async def endpoint(self, request: Request) -> Response:
        self.got.append((await request.body(), dict(request.headers)))
        if self.during is not None:
            self.during(len(self.got))
        status = self.statuses.pop(0) if self.statuses else 204
        return Response(status_code=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    catcher = Receiver()
    async with serve(Starlette(routes=[Route("/hooks", catcher.endpoint, methods=["POST"])])) as up:
        catcher.url = f"{up.url}/hooks"
        yield catcher


async def test_webhooks_are_batched_and_signed_v3(hs: Running, receiver: Receiver) -> None:
    hs.sim.webhooks.configure(_settings(receiver.url))
    for n in range(150):
        hs.sim.ui_create("deals", {"dealname": f"Deal {n}"})
    bearer = await hs.token()
    await hs.client.patch("/crm/v3/objects/contacts/1005", headers=bearer,
                          json={"properties": {"firstname": "Edna"}})  # fmt: skip
    await hs.sim.webhooks.drain()
    bodies = [orjson.loads(body) for body, _ in receiver.got]
    sizes = [len(b) for b in bodies]  # at most 100 events a request, made-together batched
    assert sizes[0] == 100
    assert max(sizes) == 100
    assert sum(sizes) == 151
    assert {e["subscriptionType"] for e in bodies[0]} == {"deal.creation"}
    assert bodies[0][0]["changeSource"] == "CRM_UI"
    ours = next(e for b in bodies for e in b if e["subscriptionType"].startswith("contact."))
    assert ours["subscriptionType"] == "contact.propertyChange"
    assert (ours["propertyName"], ours["propertyValue"]) == ("firstname", "Edna")
    assert (ours["changeSource"], ours["sourceId"]) == ("INTEGRATION", "4711")
    assert ours["portalId"] == 62515
    check = verifier(WebhookSettings(scheme=Scheme.HUBSPOT_V3, credential="hooks"))
    for body, headers in receiver.got:
        check.check_headers(headers, hs.clock.now())
        check.verify("POST", receiver.url, headers, body, [Secret(SECRET)])
    body, headers = receiver.got[0]
    with pytest.raises(WebhookRefused):
        check.verify("POST", receiver.url, headers, body + b" ", [Secret(SECRET)])


async def test_webhooks_are_retried_on_the_clock_but_not_after_a_404(
    hs: Running, receiver: Receiver
) -> None:
    hs.sim.webhooks.configure(_settings(receiver.url))
    receiver.statuses = [500, 503]
    hs.sim.ui_edit("contacts", "1003", {"lastname": "Moved"})
    await _until(lambda: len(receiver.got) == 1)
    hs.clock.advance(60)
    await _until(lambda: len(receiver.got) == 2)
    hs.clock.advance(119)  # the second wait is 120 s: nothing yet
    await asyncio.sleep(0.05)
    assert len(receiver.got) == 2
    hs.clock.advance(1)
    await hs.sim.webhooks.drain()
    attempts = [orjson.loads(body)[0] for body, _ in receiver.got]
    assert [a["attemptNumber"] for a in attempts] == [0, 1, 2]
    assert len({a["eventId"] for a in attempts}) == 1
    stamps = [h["x-hubspot-request-timestamp"] for _, h in receiver.got]
    assert len(set(stamps)) == 3  # each attempt signed anew
    receiver.statuses = [404]
    hs.sim.ui_edit("contacts", "1003", {"lastname": "Again"})
    await hs.sim.webhooks.drain()
    assert hs.sim.webhooks.stats.refused == 1
    assert len(receiver.got) == 4


async def test_a_retry_waits_from_its_attempt_even_if_time_moved_while_answering(
    hs: Running, receiver: Receiver
) -> None:
    # The clock moves while the failed attempt's answer is on its way (a busy machine, or a
    # test advancing time as the receiver gets the request): the retry is due 60 s after the
    # attempt, not 60 s after the sender read the answer.
    receiver.during = lambda n: hs.clock.advance(60) if n == 1 else None
    hs.sim.webhooks.configure(_settings(receiver.url))
    receiver.statuses = [500]
    hs.sim.ui_edit("contacts", "1003", {"lastname": "Moved"})
    await _until(lambda: len(receiver.got) == 2)
    assert [orjson.loads(b)[0]["attemptNumber"] for b, _ in receiver.got] == [0, 1]


async def test_write_faults_fail_before_or_lose_the_answer_after(hs: Running) -> None:
    bearer = await hs.token()
    await hs.client.post("/admin/fail-writes", json={"count": 1, "mode": "error"})
    body = {"properties": {"email": "new@example.com", "firstname": "New"}}
    failed = await hs.client.post("/crm/v3/objects/contacts", json=body, headers=bearer)
    assert failed.status_code == 502
    assert hs.sim.objects.by_email("new@example.com") is None
    await hs.client.post("/admin/fail-writes", json={"count": 1, "mode": "lost"})
    with pytest.raises(httpx.RemoteProtocolError):
        await hs.client.post("/crm/v3/objects/contacts", json=body, headers=bearer)
    assert hs.sim.objects.by_email("new@example.com") is not None  # applied all the same
    again = await hs.client.post("/crm/v3/objects/contacts", json=body, headers=bearer)
    assert again.status_code == 409  # HubSpot refuses a second contact with the email
    assert "Existing ID" in again.json()["message"]
    stats = hs.sim.stats
    assert (stats.writes_failed, stats.writes_lost, stats.creates) == (1, 1, 1)


def _settings(url: str) -> Any:
    from cadastre.simulators.hubspot import WebhookSettings as SimSettings

    return SimSettings(url=url, secret=SECRET)


async def _until(done: Any) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")
