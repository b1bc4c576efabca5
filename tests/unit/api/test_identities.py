"""``/v1/identities``: list, link by hand, unlink; tenant-scoped, write keys for writes, unknown
records refused with nothing written, every link and unlink in the audit log."""

from __future__ import annotations

from typing import Any

from cadastre.contract import Change, Origin
from cadastre.ports import ApiKeyScope
from tests.unit.api.conftest import A, B, World, assert_problem


async def _person(world: World, tenant: str = A) -> tuple[str, str]:
    async def put(system: str, entity: str, ext: str, **fields: Any) -> str:
        origin = Origin(system=system, connection=f"{system}-1", external_id=ext)
        change = Change(tenant=tenant, entity=entity, fields=fields, origin=origin)
        return (await world.hub.engine.apply(change)).canonical_id

    contact = await put("crm", "Contact", "101", ContactKey="101", Email="a@x.example")
    resident = await put("pms", "Resident", "7", ResidentId="7", Email="a@x.example")
    return contact, resident


async def _writer(world: World, tenant: str = A) -> dict[str, str]:
    key = (await world.hub.keys.create(tenant, ApiKeyScope.WRITE)).plaintext
    return {"Authorization": f"Bearer {key}"}


async def _audit(world: World) -> list[str]:
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        return [e.action async for e in uow.audit.entries() if e.action.startswith("identity.")]


async def test_link_list_show_and_unlink(world: World) -> None:
    contact, resident = await _person(world)
    auth = await _writer(world)
    made = await world.client.post("/v1/identities", headers=auth, json={
        "contact_id": contact, "resident_id": resident, "note": "called them",
    })  # fmt: skip
    assert made.status_code == 201, made.text
    link = made.json()
    assert (link["contact_id"], link["resident_id"], link["state"], link["how"]) == (
        contact, resident, "linked", "manual")  # fmt: skip
    assert link["evidence"]["email"]["value"] == "a@x.example"
    assert link["made_by"].startswith("api:")
    assert made.headers["location"] == f"/v1/identities/{link['id']}"
    listed = (await world.get("/v1/identities")).json()
    assert [x["id"] for x in listed["data"]] == [link["id"]]
    assert listed["next_cursor"] is None
    assert (await world.get(f"/v1/identities/{link['id']}")).json()["note"] == "called them"
    gone = await world.client.delete(
        f"/v1/identities/{link['id']}", headers=auth, params={"reason": "two people"}
    )
    assert gone.status_code == 200, gone.text
    assert gone.json()["broken_reason"] == "two people"
    listed = (await world.get("/v1/identities", state="rejected")).json()["data"]
    assert [x["state"] for x in listed] == ["rejected"]
    assert await _audit(world) == ["identity.linked", "identity.unlinked"]


async def test_bad_requests_write_nothing(world: World) -> None:
    contact, resident = await _person(world)
    auth = await _writer(world)
    unknown = await world.client.post(
        "/v1/identities", headers=auth, json={"contact_id": "nope", "resident_id": resident}
    )
    assert "Contact 'nope' does not exist" in assert_problem(unknown, 422)["detail"]
    extra = await world.client.post("/v1/identities", headers=auth, json={
        "contact_id": contact, "resident_id": resident, "by": "mallory",
    })  # fmt: skip
    assert_problem(extra, 422)
    read_only = await world.client.post(
        "/v1/identities", headers=world.auth(),
        json={"contact_id": contact, "resident_id": resident},
    )  # fmt: skip
    assert_problem(read_only, 403)
    assert_problem(await world.client.delete("/v1/identities/idl_x", headers=auth,
                                             params={"reason": "r"}), 404)  # fmt: skip
    assert (await world.get("/v1/identities")).json()["data"] == []
    made = (await world.client.post("/v1/identities", headers=auth, json={
        "contact_id": contact, "resident_id": resident})).json()  # fmt: skip
    no_reason = await world.client.delete(f"/v1/identities/{made['id']}", headers=auth)
    assert_problem(no_reason, 422)
    assert await _audit(world) == ["identity.linked"]


async def test_tenants_never_see_each_others_links(world: World) -> None:
    contact, resident = await _person(world)
    made = (await world.client.post("/v1/identities", headers=await _writer(world), json={
        "contact_id": contact, "resident_id": resident})).json()  # fmt: skip
    assert_problem(await world.get(f"/v1/identities/{made['id']}", tenant=B), 404)
    assert (await world.get("/v1/identities", tenant=B)).json()["data"] == []
    other = await world.client.delete(
        f"/v1/identities/{made['id']}", headers=await _writer(world, B), params={"reason": "r"}
    )
    assert_problem(other, 404)
    # B's own link request names A's records: they do not exist for B
    assert_problem(await world.client.post("/v1/identities", headers=await _writer(world, B),
                                           json={"contact_id": contact,
                                                 "resident_id": resident}), 422)  # fmt: skip
