"""A vendor that changes behaviour without changing its schema: the error JSON it writes
(``error_format``) and the envelope of its own answers (``envelope_rename``, ``envelope_extra``,
``envelope_wrap``), switched through the fault profile like any fault."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cadastre.simulators import FaultProfile, ResoSimulator

from .conftest import bearer, client_for


async def error_answer(sim: ResoSimulator, profile: FaultProfile) -> tuple[int, str, Any]:
    sim.faults = profile
    async with client_for(sim) as client:
        response = await client.get("/odata/Property", headers=await bearer(client))
    return response.status_code, response.headers["content-type"], response.json()


async def test_injected_errors_are_odata_errors_by_default(sim: ResoSimulator) -> None:
    status, kind, body = await error_answer(sim, FaultProfile(error_rate=1.0, paths=("/odata",)))
    assert kind == "application/json"
    assert body == {"error": {"code": "InjectedFault", "message": f"injected {status}"}}


async def test_error_format_problem_answers_rfc_9457_problem_details(sim: ResoSimulator) -> None:
    profile = FaultProfile(error_rate=1.0, paths=("/odata",), error_format="problem")
    status, kind, body = await error_answer(sim, profile)
    assert kind == "application/problem+json"
    assert body["status"] == status
    assert body["title"] in {"Internal Server Error", "Bad Gateway", "Service Unavailable"}
    assert body["detail"] == f"injected {status}"
    assert body["instance"].startswith("/requests/")


async def test_error_format_flat_carries_a_request_id_per_answer(sim: ResoSimulator) -> None:
    sim.faults = FaultProfile(error_rate=1.0, paths=("/odata",), error_format="flat")
    async with client_for(sim) as client:
        headers = await bearer(client)
        first = (await client.get("/odata/Property", headers=headers)).json()
        sim.clock.advance(1)  # type: ignore[attr-defined]  # the fixture's FakeClock
        second = (await client.get("/odata/Property", headers=headers)).json()
    assert set(first) == {"errorCode", "errorMessage", "requestId"}
    assert first["errorCode"] == "InjectedFault"
    assert first["requestId"] != second["requestId"]


async def test_throttles_follow_the_error_format_and_keep_retry_after(sim: ResoSimulator) -> None:
    sim.faults = FaultProfile(throttle_rate=1.0, paths=("/odata",), error_format="problem")
    async with client_for(sim) as client:
        response = await client.get("/odata/Property", headers=await bearer(client))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["title"] == "Too Many Requests"


async def test_the_error_format_draws_the_same_faults(sim: ResoSimulator) -> None:
    """Switching the format changes bodies only: the seeded run fails the same requests with
    the same statuses."""

    async def statuses(style: str) -> list[int]:
        sim.faults = FaultProfile(error_rate=0.5, paths=("/odata",), seed=4, error_format=style)  # type: ignore[arg-type]
        async with client_for(sim) as client:
            headers = await bearer(client)
            return [(await client.get("/odata/Property", headers=headers)).status_code
                    for _ in range(20)]  # fmt: skip

    assert await statuses("odata") == await statuses("flat")


async def test_a_renamed_paging_key_and_an_extra_key(sim: ResoSimulator) -> None:
    async with client_for(sim) as client:
        headers = await bearer(client)
        plain = await client.get("/odata/Property?$top=10", headers=headers)
        sim.faults = FaultProfile(
            paths=("/odata/Property",),
            envelope_rename={"@odata.nextLink": "odata.nextLink"},  # type: ignore[arg-type]
            envelope_extra={"@sim.notice": "v2 envelope"},  # type: ignore[arg-type]
        )
        reshaped = await client.get("/odata/Property?$top=10", headers=headers)
    before, after = plain.json(), reshaped.json()
    assert "@odata.nextLink" in before
    assert list(after) == ["@odata.context", "value", "odata.nextLink", "@sim.notice"]
    assert after["odata.nextLink"] == before["@odata.nextLink"]
    assert after["value"] == before["value"]  # the records, and so the schema, are unchanged
    assert int(reshaped.headers["content-length"]) == len(reshaped.content)


async def test_a_wrapped_envelope(sim: ResoSimulator) -> None:
    sim.faults = FaultProfile(paths=("/odata/Property",), envelope_wrap="d")
    async with client_for(sim) as client:
        response = await client.get("/odata/Property?$top=2", headers=await bearer(client))
    body = response.json()
    assert list(body) == ["d"]
    assert len(body["d"]["value"]) == 2


async def test_reshaping_leaves_errors_other_paths_and_admin_alone(sim: ResoSimulator) -> None:
    sim.faults = FaultProfile(paths=("/odata/Property",), envelope_wrap="d", error_format="flat")
    async with client_for(sim) as client:
        headers = await bearer(client)  # /oauth/token is not under the profile's paths
        bad = await client.get("/odata/Property?$filter=Nope eq 1", headers=headers)
        admin = await client.get("/admin/faults")
        metadata = await client.get("/odata/$metadata")
    assert bad.status_code == 400
    assert "error" in bad.json()  # the vendor's own 4xx: not reshaped, nor in the fault format
    assert admin.json()["envelope_wrap"] == "d"
    assert metadata.status_code == 200
    assert metadata.headers["content-type"].startswith("application/xml")


async def test_envelope_options_over_admin_round_trip(sim: ResoSimulator) -> None:
    wanted = {"envelope_rename": {"@odata.nextLink": "next"}, "envelope_extra": {"v": 2},
              "error_format": "problem", "paths": ["/odata"]}  # fmt: skip
    async with client_for(sim) as client:
        answer = await client.post("/admin/faults", json=wanted)
        refused = await client.post("/admin/faults", json={"envelope_rename": ["x"]})
        still = await client.get("/admin/faults")
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in wanted} == wanted
    assert refused.status_code == 400
    assert "envelope_rename" in refused.json()["error"]["message"]
    assert still.json() == answer.json()  # a refused profile changes nothing
    assert FaultProfile.from_json(answer.json()) == sim.faults


def test_a_profile_with_envelope_options_stays_frozen_and_hashable() -> None:
    profile = FaultProfile.from_json({"envelope_rename": {"b": "x", "a": "y"}})
    assert profile.envelope_rename == (("a", "y"), ("b", "x"))
    assert hash(profile) == hash(FaultProfile(envelope_rename=(("b", "x"), ("a", "y"))))
    assert orjson.loads(orjson.dumps(profile.to_json()))["envelope_rename"] == {"a": "y", "b": "x"}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"error_format": "xml"}, "error_format"),
        ({"error_format": 3}, "error_format"),
        ({"envelope_wrap": 1}, "envelope_wrap"),
        ({"envelope_rename": {"a": ""}}, "envelope_rename"),
        ({"envelope_rename": {"": "a"}}, "envelope_rename"),
        ({"envelope_rename": {"a": 1}}, "envelope_rename"),
        ({"envelope_extra": {"a": [1]}}, "envelope_extra"),
        ({"envelope_extra": "a=1"}, "envelope_extra"),
    ],
)
def test_bad_behaviour_options_are_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FaultProfile.from_json(fields)


def test_reshape_of_a_non_object_only_wraps() -> None:
    assert FaultProfile(envelope_rename={"a": "b"}).reshape([1, 2]) == [1, 2]  # type: ignore[arg-type]
    assert FaultProfile(envelope_wrap="data").reshape([1, 2]) == {"data": [1, 2]}
