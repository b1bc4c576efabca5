"""The RETS simulator in-process: Digest login and its session, DMQL2 searches in COMPACT and
COMPACT-DECODED, reply codes, the row cap and an ignored Offset, photos, metadata, admin calls,
all on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cadastre.connectors.mls.rets.compact import parse_metadata, parse_multipart, parse_search
from cadastre.simulators.__main__ import build_parser, build_simulator
from cadastre.simulators.rets import RetsSimulator
from cadastre.testing import FakeClock

BASE = "http://rets.test"
USER = ("demo-user", "demo-password")
CAPS = {"SearchType": "Property", "Class": "RES", "QueryType": "DMQL2"}


@pytest.fixture
def sim(clock: FakeClock) -> RetsSimulator:
    return RetsSimulator(records=60, seed=5, clock=clock)


def client_for(sim: RetsSimulator, auth: Any = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=sim.app)
    return httpx.AsyncClient(transport=transport, base_url=BASE, auth=auth)


@pytest.fixture
async def client(sim: RetsSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim, httpx.DigestAuth(*USER)) as client:
        login = await client.get("/rets/login")
        assert login.status_code == 200, login.text
        yield client


async def search(client: httpx.AsyncClient, query: str, **extra: str) -> Any:
    response = await client.get("/rets/search", params={**CAPS, "Query": query, **extra})
    assert response.status_code == 200
    return parse_search(response.content)


async def test_login_answers_the_digest_challenge_and_sets_a_session(sim: RetsSimulator) -> None:
    async with client_for(sim) as anonymous:
        refused = await anonymous.get("/rets/login")
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith("Digest ")
        assert 'qop="auth"' in challenge
        assert "algorithm=MD5" in challenge
    async with client_for(sim, httpx.DigestAuth("demo-user", "wrong")) as wrong:
        assert (await wrong.get("/rets/login")).status_code == 401
    async with client_for(sim, httpx.DigestAuth(*USER)) as right:
        login = await right.get("/rets/login")
    assert login.status_code == 200
    assert "RETS-Session-ID" in login.cookies
    assert 'ReplyCode="0"' in login.text
    assert "Search=/rets/search" in login.text
    assert "GetObject=/rets/getobject" in login.text
    assert sim.logins.logins == 1
    assert sim.logins.refused == 1


async def test_a_transaction_without_a_session_is_not_logged_in(sim: RetsSimulator) -> None:
    async with client_for(sim) as anonymous:
        result = await search(anonymous, "(ListPrice=0+)")
    assert result.reply.code == 20701


async def test_an_idle_session_expires_on_the_simulator_clock(
    sim: RetsSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (await search(client, "(ListPrice=0+)")).reply.code == 0
    clock.advance(sim.logins.session_idle + 1)
    assert (await search(client, "(ListPrice=0+)")).reply.code == 20701
    assert sim.logins.expired_replies == 1


async def test_dmql_ranges_lookups_and_negation_select_the_right_records(
    sim: RetsSimulator, client: httpx.AsyncClient
) -> None:
    records = sim.records
    cheap = await search(client, "(ListPrice=100000-300000)", Format="COMPACT", Count="1")
    expected = {k for k, r in records.items() if 100000 <= int(r["ListPrice"]) <= 300000}
    assert {row["ListingID"] for row in cheap.rows} == expected
    assert cheap.count == len(expected)
    active = await search(client, "(Status=|A,U)", Format="COMPACT")
    assert {row["ListingID"] for row in active.rows} == {
        k for k, r in records.items() if r["Status"] in {"A", "U"}
    }
    rest = await search(client, "(Status=~A,U),(City=Aus*)", Format="COMPACT")
    assert {row["ListingID"] for row in rest.rows} == {
        k for k, r in records.items() if r["Status"] not in {"A", "U"} and r["City"] == "Austin"
    }
    either = await search(client, "(ListingID=L0000001)|(ListingID=L0000002)")
    assert [row["ListingID"] for row in either.rows] == ["L0000001", "L0000002"]
    stamp = sorted(r["ModificationTimestamp"] for r in records.values())[-10]
    recent = await search(client, f"(ModificationTimestamp={stamp}+)")
    assert {row["ListingID"] for row in recent.rows} == {
        k for k, r in records.items() if r["ModificationTimestamp"] >= stamp
    }


async def test_compact_decoded_shows_long_values_and_compact_the_codes(
    client: httpx.AsyncClient,
) -> None:
    decoded = await search(
        client, "(Status=|U)", Format="COMPACT-DECODED", Select="ListingID,Status"
    )
    assert decoded.columns == ["ListingID", "Status"]
    assert {row["Status"] for row in decoded.rows} == {"Active Under Contract"}
    coded = await search(client, "(Status=|U)", Format="COMPACT", Select="Status")
    assert {row["Status"] for row in coded.rows} == {"U"}


async def test_reply_codes_for_nothing_found_bad_syntax_and_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    assert (await search(client, "(ListPrice=999999999+)")).reply.code == 20201
    assert (await search(client, "(ListPrice=abc)")).reply.code == 20206
    assert (await search(client, "ListPrice=1")).reply.code == 20206
    assert (await search(client, "(Nope=1)")).reply.code == 20200
    assert (await search(client, "(ListPrice=1+)", Format="STANDARD-XML")).reply.code == 20203
    counted = await search(client, "(ListPrice=0+)", Count="2")
    assert counted.count == 60
    assert counted.rows == []
    assert counted.columns == []


async def test_a_row_cap_answers_maxrows_and_an_ignored_offset_repeats_the_first_rows(
    sim: RetsSimulator, client: httpx.AsyncClient
) -> None:
    sim.max_rows = 25
    first = await search(client, "(ListPrice=0+)", Count="1")
    assert len(first.rows) == 25
    assert first.max_rows
    assert first.count == 60
    second = await search(client, "(ListPrice=0+)", Offset="26")
    assert second.rows[0]["ListingID"] == "L0000026"
    limited = await search(client, "(ListPrice=0+)", Limit="5", Offset="58")
    assert len(limited.rows) == 3
    assert not limited.max_rows
    sim.ignore_offset = True
    ignored = await search(client, "(ListPrice=0+)", Offset="26")
    assert ignored.rows == first.rows


async def test_photos_come_as_multipart_one_image_or_no_object_found(
    sim: RetsSimulator, client: httpx.AsyncClient
) -> None:
    with_photos = next(k for k, r in sim.records.items() if int(r["PhotoCount"]) >= 2)
    without = next(k for k, r in sim.records.items() if r["PhotoCount"] == "0")
    args = {"Resource": "Property", "Type": "Photo"}
    many = await client.get("/rets/getobject", params={**args, "ID": f"{with_photos}:*"})
    assert many.headers["content-type"].startswith("multipart/related")
    parts = parse_multipart(many.content, many.headers["content-type"])
    assert len(parts) == int(sim.records[with_photos]["PhotoCount"])
    assert parts[0].headers["object-id"] == "1"
    assert parts[0].content.startswith(b"\xff\xd8")
    one = await client.get("/rets/getobject", params={**args, "ID": f"{with_photos}:2"})
    assert one.headers["content-type"] == "image/jpeg"
    assert one.headers["object-id"] == "2"
    none = await client.get("/rets/getobject", params={**args, "ID": f"{without}:*"})
    assert 'ReplyCode="20403"' in none.text


async def test_metadata_lists_the_class_fields_and_lookup_values(client: httpx.AsyncClient) -> None:
    table = await client.get("/rets/getmetadata", params={"Type": "METADATA-TABLE",
                                                          "ID": "Property:RES"})  # fmt: skip
    reply, blocks = parse_metadata(table.content)
    assert reply.code == 0
    assert blocks[0].kind == "METADATA-TABLE"
    types = {row["SystemName"]: row["DataType"] for row in blocks[0].rows}
    assert types["ModificationTimestamp"] == "DateTime"
    assert types["ListPrice"] == "Int"
    lookups = await client.get("/rets/getmetadata", params={"Type": "METADATA-LOOKUP_TYPE",
                                                            "ID": "Property:*"})  # fmt: skip
    _, blocks = parse_metadata(lookups.content)
    status = next(b for b in blocks if b.attributes["Lookup"] == "ListingStatus")
    assert {"Active Under Contract", "Pending"} <= {row["LongValue"] for row in status.rows}
    missing = await client.get("/rets/getmetadata", params={"Type": "METADATA-X", "ID": "1"})
    assert 'ReplyCode="20503"' in missing.text


async def test_logout_ends_the_session(sim: RetsSimulator, client: httpx.AsyncClient) -> None:
    assert 'ReplyCode="0"' in (await client.get("/rets/logout")).text
    assert (await search(client, "(ListPrice=0+)")).reply.code == 20701
    assert sim.stats.logouts == 1


async def test_admin_touches_deletes_expires_and_refuses_bad_input(
    sim: RetsSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    touched = await client.post("/admin/touch", json={"keys": ["L0000003"],
                                                      "changes": {"ListPrice": 5}})  # fmt: skip
    assert touched.json() == {"touched": ["L0000003"]}
    record = sim.records["L0000003"]
    assert record["ListPrice"] == "5"
    assert record["ModificationTimestamp"] == sim.local_time(clock.now())
    assert (await client.post("/admin/delete", json={"keys": ["L0000004"]})).json() == {
        "deleted": ["L0000004"]
    }
    assert "L0000004" not in sim.records
    assert (await client.post("/admin/touch", json={"keys": ["nope"]})).status_code == 400
    assert (await client.post("/admin/delete", json=[1])).status_code == 400
    bad = await client.post("/admin/settings", json={"max_rows": 0})
    assert bad.status_code == 400
    assert sim.max_rows is None
    changed = await client.post("/admin/settings", json={"max_rows": 7, "ignore_offset": True})
    assert changed.json()["max_rows"] == 7
    assert sim.ignore_offset
    assert (await client.post("/admin/expire-sessions")).json() == {"expired": 1}
    assert (await search(client, "(ListPrice=0+)")).reply.code == 20701


async def test_reply_content_type_milliseconds_and_broken_photos_on_demand(
    sim: RetsSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    changed = await client.post(
        "/admin/settings", json={"reply_content_type": "text/plain", "millis": True}
    )
    assert changed.json()["reply_content_type"] == "text/plain"
    answer = await client.get("/rets/search", params={**CAPS, "Query": "(ListPrice=0+)"})
    assert answer.headers["content-type"] == "text/plain"
    sim.reply_content_type = None
    answer = await client.get("/rets/search", params={**CAPS, "Query": "(ListPrice=0+)"})
    assert "content-type" not in answer.headers
    assert parse_search(answer.content).reply.code == 0

    clock.advance(0.25)
    sim.touch(keys=["L0000001"])
    stamp = sim.records["L0000001"]["ModificationTimestamp"]
    assert stamp.endswith(".250")
    whole = stamp[:-4]
    assert not (await search(client, f"(ModificationTimestamp={whole}-{whole})")).rows
    assert (await search(client, f"(ModificationTimestamp={whole}-{whole}.999)")).rows

    key = next(k for k, r in sim.records.items() if int(r["PhotoCount"]) >= 2)
    sim.broken_photos.add(key)
    params = {"Resource": "Property", "Type": "Photo", "ID": f"{key}:*"}
    cut = await client.get("/rets/getobject", params=params)
    with pytest.raises(ValueError, match="without headers"):
        parse_multipart(cut.content, cut.headers["content-type"])


async def test_a_malformed_row_has_a_column_too_many(
    sim: RetsSimulator, client: httpx.AsyncClient
) -> None:
    sim.malformed.add("L0000002")
    result = await search(client, "(ListingID=L0000001,L0000002)")
    assert isinstance(result.rows[0], dict)
    assert not isinstance(result.rows[1], dict)
    assert "values for" in result.rows[1].reason


def test_the_command_line_builds_a_rets_simulator() -> None:
    args = build_parser().parse_args(["rets", "--records", "5", "--max-rows", "2",
                                      "--ignore-offset"])  # fmt: skip
    sim = build_simulator(args)
    assert isinstance(sim, RetsSimulator)
    assert sim.max_rows == 2
    assert sim.ignore_offset
    assert len(sim.records) == 5
