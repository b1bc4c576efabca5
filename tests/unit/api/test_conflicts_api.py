"""``/v1/conflicts`` and ``/v1/audit``: the review queue over HTTP, tenant-scoped; a resolution
needs a write key, applies through the engine and lands in the record's audit trail."""

from __future__ import annotations

from datetime import timedelta

from cadastre.contract import Change, Origin
from cadastre.ports import ApiKeyScope
from cadastre.testing import EPOCH
from tests.unit.api.conftest import A, B, World, assert_problem


def _phone(system: str, value: str, seconds: float, rid: str | None = None) -> Change:
    return Change(
        tenant=A, entity="Resident", canonical_id=rid,
        fields={"MobilePhone": value} if rid else {"MobilePhone": value, "FirstName": "Ann"},
        origin=Origin(system=system, connection=f"{system}-main", external_id=f"{system}-R1",
                      source_time=EPOCH + timedelta(seconds=seconds)),
    )  # fmt: skip


async def test_list_resolve_and_audit(world: World) -> None:
    engine = world.hub.engine
    rid = (await engine.apply(_phone("pms", "1", 0))).canonical_id
    await engine.apply(_phone("crm", "2", 60, rid))
    await engine.apply(_phone("pms", "3", 120, rid))
    await engine.apply(_phone("crm", "4", 120.5, rid))  # concurrent within the skew: queued

    listed = await world.get("/v1/conflicts", entity="Resident")
    assert listed.status_code == 200, listed.text
    [conflict] = listed.json()
    assert (conflict["record_id"], conflict["field"], conflict["state"]) == (
        rid,
        "MobilePhone",
        "open",
    )
    assert (await world.get("/v1/conflicts", B)).json() == []  # another tenant sees none
    assert_problem(await world.get(f"/v1/conflicts/{conflict['id']}", B), 404)

    path = f"/v1/conflicts/{conflict['id']}/resolve"
    read_only = await world.client.post(path, json={"resolution": "keep_current"},
                                        headers=world.auth())  # fmt: skip
    assert read_only.status_code == 403, read_only.text
    writer = (await world.hub.keys.create(A, ApiKeyScope.WRITE)).plaintext
    headers = {"Authorization": f"Bearer {writer}"}
    bad = await world.client.post(path, json={"resolution": "value"}, headers=headers)
    assert_problem(bad, 422)
    stranger = (await world.hub.keys.create(B, ApiKeyScope.WRITE)).plaintext
    theirs = {"Authorization": f"Bearer {stranger}"}
    elsewhere = await world.client.post(path, json={"resolution": "keep_current"}, headers=theirs)
    assert_problem(elsewhere, 404)  # another tenant's write key cannot resolve it
    done = await world.client.post(path, json={"resolution": "value", "value": "555-0199"},
                                   headers=headers)  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["conflict"]["state"] == "resolved"
    again = await world.client.post(path, json={"resolution": "keep_current"}, headers=headers)
    assert_problem(again, 409)
    trail = await world.get("/v1/audit", entity="Resident", id=rid)
    actions = [e["action"] for e in trail.json()]
    assert "conflict.queued" in actions
    assert actions[-1] == "conflict.resolved"
    assert trail.json()[-1]["actor"].startswith("api:")
    assert (await world.get("/v1/audit", B, entity="Resident", id=rid)).json() == []
    # a long trail is read in pages: ``after`` = the last seq seen
    first = (await world.get("/v1/audit", entity="Resident", id=rid, limit=2)).json()
    rest = (await world.get("/v1/audit", entity="Resident", id=rid,
                            after=first[-1]["seq"])).json()  # fmt: skip
    assert [e["seq"] for e in first + rest] == [e["seq"] for e in trail.json()]
    assert len(first) == 2 < len(trail.json())
