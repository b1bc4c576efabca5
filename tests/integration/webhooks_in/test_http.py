"""``POST /webhooks/{tenant}/{connection}`` over real HTTP on loopback, on SQLite and PostgreSQL
(RELIABILITY.md promise 12): forged, tampered, stale and oversized requests refused with the
right status before the body is parsed, and recorded; legitimate rotations pass; a replay is a
2xx with no second row."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub
from cadastre.cli.serve import serve_app
from cadastre.ports import InboxStatus
from cadastre.testing import FakeClock
from tests.integration.webhooks_in.conftest import CRM_SECRET, PMS_LIMIT, PMS_SECRET, TENANT
from tests.webhook_signers import OTHER_SECRET, buildium, standard

BODY = b'{"value":[{"ListingKey":"L1","ModificationTimestamp":"2026-11-27T08:00:00Z"}]}'
CRM = f"/webhooks/{TENANT}/crm"
PMS = f"/webhooks/{TENANT}/pms"


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_app(create_app(hub)) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as client,
    ):
        yield client


def signed(clock: FakeClock, body: bytes = BODY, msg_id: str = "msg_1",
           secrets: list[str] | None = None, off: float = 0) -> dict[str, str]:  # fmt: skip
    when = clock.now() + timedelta(seconds=off)
    return {**standard(secrets or [CRM_SECRET], body, when, msg_id),
            "content-type": "application/json"}  # fmt: skip


async def stored(hub: Hub, connection: str = "crm") -> list[Any]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return await uow.webhooks_in.entries(connection, limit=1000)


async def refusals(hub: Hub) -> dict[str, int]:
    await hub.webhooks_in.writer.flush()
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        found = await uow.webhooks_in.refusals()
    counts: dict[str, int] = {}
    for tally in found:
        counts[tally.reason] = counts.get(tally.reason, 0) + tally.count
    return counts


async def test_a_signed_webhook_is_stored_before_its_200(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    answer = await client.post(CRM, content=BODY, headers=signed(clock))
    assert answer.status_code == 200
    assert answer.headers["webhook-status"] == "stored"
    assert answer.content == b""
    (entry,) = await stored(hub)
    assert (entry.message_id, entry.body, entry.status) == ("msg_1", BODY, InboxStatus.PENDING)
    assert entry.received_at == clock.now()
    assert "webhook-signature" not in entry.headers  # never stored
    assert entry.headers["webhook-id"] == "msg_1"
    assert entry.headers["content-type"] == "application/json"


async def test_a_replay_is_a_200_and_no_second_row(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    headers = signed(clock)
    first = await client.post(CRM, content=BODY, headers=headers)
    again = await asyncio.gather(*[client.post(CRM, content=BODY, headers=headers)
                                   for _ in range(20)])  # fmt: skip
    assert first.headers["webhook-status"] == "stored"
    assert {(a.status_code, a.headers["webhook-status"]) for a in again} == {(200, "duplicate")}
    assert len(await stored(hub)) == 1
    # the same message at the same moment, twenty times at once: still one row
    racing = signed(clock, msg_id="msg_2")
    answers = await asyncio.gather(*[client.post(CRM, content=BODY, headers=racing)
                                     for _ in range(20)])  # fmt: skip
    assert sorted(a.headers["webhook-status"] for a in answers) == ["duplicate"] * 19 + ["stored"]
    assert len(await stored(hub)) == 2


async def test_the_promise_12_corpus_is_refused_with_401_and_recorded(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    good = signed(clock)
    cases: list[tuple[str, bytes, dict[str, str]]] = []
    cases += [  # one-byte flips all along the body
        ("bad_signature", BODY[:i] + bytes([BODY[i] ^ 0x20]) + BODY[i + 1 :], good)
        for i in range(0, len(BODY), 7)
    ]
    wrong = signed(clock, secrets=[OTHER_SECRET["standard_webhooks"]])
    cases.append(("bad_signature", BODY, wrong))
    for gone in ("webhook-signature", "webhook-id"):
        cases.append(("missing_signature", BODY, {k: v for k, v in good.items() if k != gone}))
    cases.append(("missing_timestamp", BODY,
                  {k: v for k, v in good.items() if k != "webhook-timestamp"}))  # fmt: skip
    cases.append(("stale_timestamp", BODY, signed(clock, off=301)))
    cases.append(("stale_timestamp", BODY, signed(clock, off=-301)))
    parsed = json.loads(BODY)
    for again in (json.dumps(parsed).encode(), json.dumps(parsed, indent=1).encode()):
        cases.append(("bad_signature", BODY, signed(clock, body=again)))  # signed re-serialised
        cases.append(("bad_signature", again, good))  # re-serialised on the way
    expected: dict[str, int] = {}
    for reason, body, headers in cases:
        answer = await client.post(CRM, content=body, headers=headers)
        assert answer.status_code == 401, (reason, answer.text)
        problem = answer.json()
        assert problem["reason"] == reason
        assert problem["type"] == "urn:cadastre:problem:webhook-refused"
        assert CRM_SECRET not in answer.text
        expected[reason] = expected.get(reason, 0) + 1
    assert await stored(hub) == []
    assert await refusals(hub) == expected
    # the example kept with each count has the request's headers, never its signature
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        for tally in await uow.webhooks_in.refusals():
            assert "webhook-signature" not in tally.example
            assert tally.connection == "crm"


async def test_the_body_is_not_parsed_before_the_signature_is_checked(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    garbage = b'{"value": [ this is not JSON'
    forged = signed(clock, body=b"{}")  # a signature, but not over this body
    answer = await client.post(CRM, content=garbage, headers=forged)
    assert (answer.status_code, answer.json()["reason"]) == (401, "bad_signature")  # not 400
    # and signed, it is stored as it came: reading it is the normaliser's business
    answer = await client.post(CRM, content=garbage, headers=signed(clock, body=garbage))
    assert answer.status_code == 200
    assert [e.body for e in await stored(hub)] == [garbage]


async def test_a_rotation_passes_without_a_refusal(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    new = OTHER_SECRET["standard_webhooks"]
    first = await client.post(CRM, content=BODY, headers=signed(clock, msg_id="a"))
    assert first.status_code == 200
    current = await hub.vault.stored(TENANT, "crm-hooks")
    until = clock.now() + timedelta(hours=1)
    await hub.vault.update(current, secrets={"secret": new, "previous_secret": CRM_SECRET},
                           meta={"previous_valid_until": until.isoformat()})  # fmt: skip
    # at once (not after the held secrets' recheck): a failed check looks at the version again
    for msg_id, secrets in (("b", [new]), ("c", [CRM_SECRET]), ("d", [new, CRM_SECRET])):
        answer = await client.post(CRM, content=BODY, headers=signed(clock, msg_id=msg_id,
                                                                     secrets=secrets))  # fmt: skip
        assert answer.status_code == 200, (msg_id, answer.text)
    clock.advance(3601)  # the overlap is over: the old secret no longer verifies
    refused = await client.post(CRM, content=BODY, headers=signed(clock, msg_id="e"))
    assert (refused.status_code, refused.json()["reason"]) == (401, "bad_signature")
    fresh = await client.post(CRM, content=BODY, headers=signed(clock, msg_id="f", secrets=[new]))
    assert fresh.status_code == 200
    assert sorted(e.message_id for e in await stored(hub)) == ["a", "b", "c", "d", "f"]
    # one decryption per version, not one per request
    assert hub.webhooks_in.credentials.opened == 2


async def test_an_oversized_body_is_refused_from_its_length(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    big = b"x" * (PMS_LIMIT + 1)
    answer = await client.post(PMS, content=big, headers=buildium(PMS_SECRET, big, clock.now()))
    assert (answer.status_code, answer.json()["reason"]) == (413, "too_large")
    fits = b"y" * PMS_LIMIT
    ok = await client.post(PMS, content=fits, headers=buildium(PMS_SECRET, fits, clock.now()))
    assert ok.status_code == 200
    assert await refusals(hub) == {"too_large": 1}


async def test_an_oversized_chunked_body_is_refused_without_reading_it_all(
    hub: Hub, clock: FakeClock
) -> None:
    async with serve_app(create_app(hub)) as running:
        host, port = running.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        headers = buildium(PMS_SECRET, b"unused", clock.now())
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST {PMS} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                     f"Content-Type: application/json\r\n{head}\r\n".encode())  # fmt: skip
        chunk = b"z" * 1024
        for _ in range(3):  # 3 KiB of an endless body, over the 2 KiB limit; the rest never sent
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
    assert status.split()[1] == b"413"
    assert await stored(hub, "pms") == []


async def test_no_endpoint_is_a_404_and_nothing_is_recorded(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    for path in ("/webhooks/acme/nope", "/webhooks/globex/crm", "/webhooks/acme/plain",
                 "/webhooks/ACME/crm", "/webhooks/acme/-x"):  # fmt: skip
        answer = await client.post(path, content=BODY, headers=signed(clock))
        assert (answer.status_code, answer.json()["reason"]) == (404, "unknown_connection")
    assert await refusals(hub) == {}  # names the sender chose are not stored
    other = await client.get(CRM)  # only POST is taken in
    assert other.status_code == 405
    documented = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in documented["/webhooks/{tenant}/{connection}"]


async def test_a_credential_that_cannot_be_used_is_a_503(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await hub.vault.delete(TENANT, "crm-hooks")
    with caplog.at_level(logging.WARNING, logger="cadastre"):
        answer = await client.post(CRM, content=BODY, headers=signed(clock))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["reason"] == "not_configured"
    assert await refusals(hub) == {"not_configured": 1}


async def test_refusals_are_logged_once_a_minute_without_signatures(
    hub: Hub, client: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    forged = signed(clock, secrets=[OTHER_SECRET["standard_webhooks"]])
    with caplog.at_level(logging.WARNING, logger="cadastre"):
        for _ in range(5):
            await client.post(CRM, content=BODY, headers=forged)
    lines = [r.getMessage() for r in caplog.records if "webhook refused" in r.getMessage()]
    assert len(lines) == 1
    assert "bad_signature" in lines[0]
    text = caplog.text
    assert forged["webhook-signature"].split(",", 1)[1] not in text
    assert CRM_SECRET not in text
    assert await refusals(hub) == {"bad_signature": 5}
