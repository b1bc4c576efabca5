"""Identity resolution through a running hub on SQLite (outbox relay, in-process bus, the
``identity`` consumer): a contact and a resident with one e-mail, applied from two connections,
are linked with evidence; the contact's phone reaches the resident; ``cadastre identities
unlink`` (the real CLI, in its own process, on the same database) stops that; a link by hand
through the CLI starts it again; a vendor merge re-points the cross-reference and the link and
tombstones the merged contact; unknown ids are refused with nothing written."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.mapping import MappingRegistry
from cadastre.ports import LinkState, RawPage, RawRecord
from tests.integration.cli_env import cli

T = "acme"
X = TypeVar("X")
CONTACT_MAPPING = """
mapping: crm/test
version: 1
entity: Contact
stream: contacts
key: id
timestamp: updatedAt
standard_names: false
unknown_fields: ignore
fields: {id: ContactKey, email: Email, firstname: FirstName, lastname: LastName, updatedAt: null}
"""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = Settings(data_dir=tmp_path / "var", log_level="WARNING")
    hub = await bootstrap(settings, configure_logs=False)
    await hub.tenants.create(T, "Acme")
    async with hub.running():
        yield hub
    await hub.close()


async def until(check: Callable[[], Awaitable[X | None]], what: str, seconds: float = 15) -> X:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def apply(hub: Hub, system: str, connection: str, entity: str, ext: str,
                **fields: Any) -> Any:  # fmt: skip
    origin = Origin(system=system, connection=connection, external_id=ext,
                    source_time=datetime.now(UTC))  # fmt: skip
    return await hub.engine.apply(Change(tenant=T, entity=entity, fields=fields, origin=origin))


async def record(hub: Hub, entity: str, id: str) -> Any:
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        return await uow.records.get(entity, id)


async def consumed(hub: Hub, event_id: str) -> bool:
    """Whether the identity consumer has acted on the event (a look: rolled back)."""
    async with hub.store.unit_of_work(T) as uow:
        new = await uow.consumed.first_seen("identity", [event_id])
        await uow.rollback()
    return not new


class Contacts:
    system = "crm"

    def __init__(self, records: Sequence[RawRecord]) -> None:
        self.records = list(records)

    def streams(self) -> Sequence[str]:
        return ["contacts"]

    async def aclose(self) -> None:
        return None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        yield RawPage(stream, self.records, {"n": len(self.records)})


@pytest.mark.timeout(300)  # six runs of the CLI, each its own process on a shared machine
async def test_linking_propagation_unlink_relink_and_merge(hub: Hub, tmp_path: Path) -> None:
    invoke = cli(tmp_path, env={"CADASTRE_DATA_DIR": str(tmp_path / "var")})

    async def run_cli(*args: str, code: int = 0) -> str:
        return await asyncio.to_thread(invoke, *args, code=code)

    contact = (await apply(hub, "crm", "hubspot-1", "Contact", "101", ContactKey="101",
                           FirstName="Ada", LastName="Lovelace",
                           Email="Ada@Example.com")).canonical_id  # fmt: skip
    resident = (await apply(hub, "pms", "buildium-1", "Resident", "7", ResidentId="7",
                            FirstName="Ada", LastName="Lovelace",
                            Email="ada@example.com")).canonical_id  # fmt: skip

    async def linked() -> Any:
        found = await hub.identities.find(T, state=LinkState.LINKED)
        return found[0] if found else None

    link = await until(linked, "the link")
    assert (link.left_id, link.right_id, link.how.value) == (contact, resident, "auto")
    assert link.evidence["email"]["value"] == "ada@example.com"
    assert link.confidence >= 0.9

    async def keyed() -> bool:
        held = await record(hub, "Resident", resident)
        return bool(held.data.get("ContactKey") == contact)

    await until(keyed, "Resident.ContactKey")

    # the contact's phone reaches the resident, with the CRM change's origin
    await apply(hub, "crm", "hubspot-1", "Contact", "101", MobilePhone="+1 512 555 0100")

    async def phoned() -> bool:
        held = await record(hub, "Resident", resident)
        return bool(held.data.get("MobilePhone") == "+1 512 555 0100")

    await until(phoned, "the phone on the resident")
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        stamp = (await uow.provenance.for_record("Resident", resident))["MobilePhone"]
    assert (stamp.system, stamp.connection) == ("crm", "hubspot-1")

    # the real CLI lists it, and refuses bad input with clear errors and nothing written (three
    # processes at once: each CLI run is seconds of interpreter start-up)
    before = await hub.identities.find(T)
    listed, bad_link, bad_unlink = await asyncio.gather(
        run_cli("identities", "list", "-t", T, "--json"),
        run_cli("identities", "link", "nope", resident, "-t", T, code=2),
        run_cli("identities", "unlink", "idl_nope", "--reason", "x", "-t", T, code=2),
    )
    assert [x["id"] for x in json.loads(listed)] == [link.id]
    assert "Contact 'nope' does not exist" in bad_link
    assert "identity link 'idl_nope' does not exist" in bad_unlink
    assert await hub.identities.find(T) == before

    # and unlinks it
    out = await run_cli("identities", "unlink", link.id, "--reason", "two people", "-t", T)
    assert "unlinked" in out
    assert (await record(hub, "Resident", resident)).data.get("ContactKey") is None
    result = await apply(hub, "crm", "hubspot-1", "Contact", "101", MobilePhone="5125550199")
    await until(lambda: consumed(hub, result.event_id), "the consumer to see the change")
    assert (await record(hub, "Resident", resident)).data["MobilePhone"] == "+1 512 555 0100"

    # a person links them again by hand; the phone travels again
    out = await run_cli("identities", "link", contact, resident, "--note", "same person", "-t", T)
    assert "linked" in out
    await until(keyed, "Resident.ContactKey again")
    # shown by the CLI while the rest goes on (the merge below breaks the link, not these fields)
    manual = await linked()
    show = asyncio.create_task(run_cli("identities", "show", manual.id, "-t", T, "--json"))
    await apply(hub, "crm", "hubspot-1", "Contact", "101", MobilePhone="5125550142")

    async def phoned_again() -> bool:
        held = await record(hub, "Resident", resident)
        return bool(held.data.get("MobilePhone") == "5125550142")

    await until(phoned_again, "the phone after the manual link")
    actions = [e.action async for e in _audit(hub) if e.action.startswith("identity.")]
    assert actions == ["identity.linked", "identity.unlinked", "identity.linked"]

    # HubSpot merges contact 101 into 102
    survivor = (await apply(hub, "crm", "hubspot-1", "Contact", "102", ContactKey="102",
                            LastName="Lovelace")).canonical_id  # fmt: skip
    family = tmp_path / "crm.yaml"
    family.write_text(CONTACT_MAPPING)
    mapper = MappingRegistry(tmp_path / "registry", {"crm/test": family}).load("crm/test")
    merge = RawRecord("contacts", "101", {}, datetime.now(UTC), merged_into="102")
    report = await hub.runner.run(tenant=T, connection="hubspot-1", connector=Contacts([merge]),
                                  mappers={"contacts": mapper})  # fmt: skip
    assert report.tally.merged == 1
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        assert await uow.xref.resolve("crm", "hubspot-1", "Contact", "101") == survivor
    assert (await record(hub, "Contact", contact)).deleted
    moved = await linked()
    assert (moved.left_id, moved.evidence["merged_from"]["record"]) == (survivor, contact)
    assert (await record(hub, "Resident", resident)).data["ContactKey"] == survivor
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        assert (await uow.audit.verify()).ok
    shown = json.loads(await show)
    assert (shown["id"], shown["how"], shown["note"], shown["made_by"]) == (
        manual.id, "manual", "same person", "cli")  # fmt: skip


async def _audit(hub: Hub) -> AsyncIterator[Any]:
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        async for entry in uow.audit.entries():
            yield entry
