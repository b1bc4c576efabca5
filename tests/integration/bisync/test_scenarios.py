"""The bi-directional sync scenarios (issue 8 item 9, RELIABILITY.md promise 23) through the real
pieces: the HubSpot and Buildium simulators over HTTP on loopback, a hub on SQLite, signed
webhooks, polling, identity propagation and the write-back worker, stepped one by one
(``harness.py``). Each scenario checks the final values on every side (both vendors and the hub's
two records) and the vendor write counts exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cadastre.ports import ConflictResolution, WritebackMode, WriteState
from tests.integration.bisync.harness import CRM, PERSON, PMS, TENANT, Bench, World, open_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with open_bench(tmp_path) as opened:
        yield opened


@pytest.fixture
async def world(bench: Bench) -> AsyncIterator[World]:
    async with bench.world() as opened:
        yield opened


def person(**changes: str) -> dict[str, str]:
    return {**PERSON, **changes}


async def everywhere(world: World, expected: dict[str, str]) -> None:
    seen = await world.observe()
    assert seen.sides() == {"crm": expected, "pms": expected, "contact": expected,
                            "resident": expected}, (seen.sides(), world.log)  # fmt: skip
    assert seen.audit_ok
    assert not seen.open_conflicts


async def test_concurrent_edits_within_the_skew_go_to_review_then_reach_both(world: World) -> None:
    world.edit_crm("FirstName", "Anna")
    world.edit_pms("FirstName", "Annie")  # the same instant: unorderable
    await world.deliver(CRM)
    await world.normalise()
    await world.relay()  # the contact's edit reaches the resident; its write to Buildium waits
    await world.deliver(PMS)
    await world.normalise()
    await world.relay()
    queued = await world.conflicts()
    assert [(c.entity, c.field, c.incoming["value"]) for c in queued] == [
        ("Resident", "FirstName", "Annie")
    ]
    seen = await world.observe()
    assert seen.contact["FirstName"] == seen.resident["FirstName"] == "Anna"  # nothing overwritten
    assert seen.pms["FirstName"] == "Annie"
    assert seen.audit_actions["conflict.queued"] == 1
    await world.resolve_conflicts(ConflictResolution.TAKE_INCOMING)
    await world.quiesce()
    await everywhere(world, person(FirstName="Annie"))
    seen = await world.observe()
    assert seen.audit_actions["conflict.resolved"] >= 1
    assert [c.resolution for c in seen.resolved_conflicts] == [ConflictResolution.TAKE_INCOMING]
    assert (seen.crm_patches, seen.pms_puts) == (1, 1)


async def test_concurrent_edits_outside_the_skew_the_later_wins_on_record(world: World) -> None:
    world.edit_crm("LastName", "King")
    world.advance(30)
    world.edit_pms("LastName", "Byron")  # 30 s later: ordered by time
    await world.deliver(CRM)
    await world.normalise()
    await world.relay()
    await world.deliver(PMS)
    await world.quiesce()
    await everywhere(world, person(LastName="Byron"))
    seen = await world.observe()
    assert not seen.resolved_conflicts  # no person needed
    assert seen.audit_actions["conflict.resolved"] >= 1  # the automatic decision is recorded
    assert (seen.crm_patches, seen.pms_puts) == (1, 0)


async def test_edits_of_different_fields_are_both_kept_and_nothing_is_blanked(
    world: World,
) -> None:
    world.edit_crm("FirstName", "Anna")
    world.advance(1)  # not the same instant: see the report on exact ties
    world.edit_pms("LastName", "Byron")
    await world.deliver(CRM)
    await world.normalise()
    await world.relay()
    await world.run_writeback()  # Buildium's PUT: read, merge, every field sent
    await world.relay()
    assert world.pms.get("tenants", world.resident_ext)["LastName"] == "Byron"  # type: ignore[index]
    await world.quiesce()
    await everywhere(world, person(FirstName="Anna", LastName="Byron"))
    seen = await world.observe()
    assert (seen.crm_patches, seen.pms_puts) == (1, 1)


async def test_duplicate_and_reordered_webhooks_neither_regress_nor_write_again(
    world: World,
) -> None:
    world.edit_crm("Email", "ada@first.example")
    world.advance(10)
    world.edit_crm("Email", "ada@second.example")
    await world.duplicate(CRM, 1)  # the newer one first, twice
    await world.duplicate(CRM, 0)  # then the older one, twice
    await world.quiesce()
    await everywhere(world, person(Email="ada@second.example"))
    seen = await world.observe()
    assert (seen.crm_patches, seen.pms_puts) == (0, 1)


async def test_a_dropped_webhook_is_healed_by_polling(world: World) -> None:
    world.edit_pms("MobilePhone", "5125550199")
    assert world.drop(PMS)
    await world.settle_once()
    assert (await world.observe()).resident["MobilePhone"] == PERSON["MobilePhone"]
    await world.quiesce()  # polls both connections
    await everywhere(world, person(MobilePhone="5125550199"))
    seen = await world.observe()
    assert (seen.crm_patches, seen.pms_puts) == (1, 0)


async def test_a_write_failing_mid_flight_has_exactly_one_effect(world: World) -> None:
    world.pms.fail_writes(1)  # a 5xx before anything is stored (the gateway tries again)
    await world.edit_platform("Resident", {"FirstName": "Augusta"})
    await world.run_writeback()
    assert world.pms.stats.writes_failed == 1
    world.pms.fail_writes(1, after_commit=True)  # applied, and the answer lost
    await world.edit_platform("Resident", {"LastName": "King"})
    await world.run_writeback()
    assert world.pms.stats.writes_failed == 2
    await world.quiesce()
    await everywhere(world, person(FirstName="Augusta", LastName="King"))
    seen = await world.observe()
    assert seen.states() == {"applied": 4}  # two platform writes, each propagated once
    # Augusta: one PUT (the refused one stored nothing). King: the PUT whose answer was a 500
    # after it took effect, sent again by the gateway: a whole-object PUT of the same body, one
    # effect. HubSpot: one PATCH per field.
    assert (seen.pms_puts, seen.crm_patches) == (3, 2)


async def test_a_worker_killed_between_ack_and_commit_is_recovered_once(world: World) -> None:
    await world.edit_platform("Contact", {"LastName": "King"})
    assert await world.crash_writeback("writeback.acked")
    (target,) = await world.targets()
    assert target.state is WriteState.SENDING
    assert world.crm.stats.patches[world.contact_ext] == 1  # HubSpot has it; we do not know
    await world.quiesce()  # the claim runs out; a fresh worker recovers it
    await everywhere(world, person(LastName="King"))
    seen = await world.observe()
    assert seen.pms_puts == 1
    assert seen.states()["applied"] == 2


async def test_our_echo_is_dropped_and_a_peer_rewrite_right_after_passes(world: World) -> None:
    await world.edit_platform("Contact", {"FirstName": "Augusta"})
    await world.run_writeback()
    await world.deliver(CRM)  # HubSpot reports our own PATCH back
    await world.normalise()
    assert world.echoes_dropped(CRM) == 1
    world.advance(1)
    world.edit_crm("FirstName", "Augusta Ada", source="AUTOMATION")  # a peer workflow
    await world.deliver(CRM)
    await world.normalise()
    assert world.echoes_dropped(CRM) == 1  # not an echo: a later version
    await world.quiesce()
    await everywhere(world, person(FirstName="Augusta Ada"))
    seen = await world.observe()
    assert (seen.crm_patches, seen.pms_puts) == (1, 1)  # Buildium gets the peer's value only


async def test_shadow_mode_sends_nothing_and_the_kill_switch_holds_then_sends_once(
    world: World,
) -> None:
    hub = world.hub
    await hub.writeback.set_mode(TENANT, PMS, WritebackMode.SHADOW, by="test")
    await world.edit_platform("Resident", {"LastName": "King"})
    await world.run_writeback()
    (shadowed,) = await world.targets()
    assert shadowed.state is WriteState.SHADOWED
    assert shadowed.receipt is not None
    assert shadowed.receipt["shadow"]
    assert world.pms.stats.puts[f"tenants/{world.resident_ext}"] == 0

    await hub.writeback.set_mode(TENANT, PMS, WritebackMode.LIVE, by="test")
    await hub.writeback.stop(TENANT, None, by="test", reason="incident")
    await world.edit_platform("Resident", {"LastName": "Byron"})
    await world.run_writeback()
    held = await world.targets(WriteState.HELD)
    assert len(held) == 1
    assert world.pms.stats.puts[f"tenants/{world.resident_ext}"] == 0
    assert await hub.writeback.resume(TENANT, None, by="test") == 1
    await world.quiesce()
    await everywhere(world, person(LastName="Byron"))
    seen = await world.observe()
    assert (seen.crm_patches, seen.pms_puts) == (1, 1)
    assert seen.states()["shadowed"] == 1


# ------------------------------------------------------------------ QuickBooks: stale SyncToken


async def test_a_stale_synctoken_is_reread_and_remerged_so_both_edits_survive(
    tmp_path: Path,
) -> None:
    from cadastre.api import create_app
    from cadastre.bootstrap import bootstrap
    from cadastre.cli.serve import serve_app
    from cadastre.config import Settings
    from cadastre.directory import ConnectionSpec
    from cadastre.ports import ApiKeyScope
    from cadastre.simulators import serve
    from cadastre.simulators.quickbooks import QuickBooksSimulator
    from cadastre.testing import FakeClock
    from tests.integration.bisync.harness import LOOPBACK, MERGE, NOW

    clock = FakeClock(NOW, autojump=True)
    sim = QuickBooksSimulator(clock=clock)
    realm = next(iter(sim.companies))
    async with serve(sim.app) as up:
        hub = await bootstrap(Settings(data_dir=tmp_path, gateway_allow_hosts=LOOPBACK),
                              clock=clock, configure_logs=False)  # fmt: skip
        try:
            await hub.tenants.create(TENANT, "Acme")
            granted = sim.oauth.grant("qbo-client", realm)
            await hub.vault.add(TENANT, "qbo", "oauth2_authorization_code",
                                {"client_id": "qbo-client", "client_secret": "qbo-secret",
                                 "refresh_token": granted["refresh_token"]},
                                {"refresh_token_reuse": "allowed"})  # fmt: skip
            await hub.connections.put(TENANT, ConnectionSpec(
                name="books", system="accounting", connector="accounting/quickbooks",
                credential="qbo",
                config={"base_url": up.url, "realm_id": realm,
                        "token_url": f"{up.url}/oauth2/v1/tokens/bearer",
                        "gateway": {"allow_hosts": list(LOOPBACK)}},
            ))  # fmt: skip
            await hub.writeback.set_mode(TENANT, "books", WritebackMode.LIVE, by="test")
            await hub.sync(TENANT, "books")
            async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
                account = await uow.xref.resolve("accounting", "books", "LedgerAccount", "4")
            assert account is not None
            key = (await hub.keys.create(TENANT, ApiKeyScope.WRITE)).plaintext
            writes_before = sim.stats.api_writes
            async with serve_app(create_app(hub)) as api, httpx.AsyncClient(
                base_url=api.url, timeout=30) as client:  # fmt: skip
                answer = await client.patch(
                    f"/v1/ledger-accounts/{account}", json={"Name": "Rent income"},
                    headers={**MERGE, "Authorization": f"Bearer {key}"},
                )  # fmt: skip
                assert answer.status_code == 202, answer.text
            (target,) = await hub.writeback.targets_of(TENANT)
            assert target.base_version is not None  # the SyncToken the hub knew
            # the accountant edits another field in QuickBooks before our write goes out
            sim.ui_edit("Account", "update", {"AcctNum": "4050"}, object_id="4")
            await hub.writeback.worker().run_once()
            held = sim.get("Account", "4")
            assert held is not None
            assert (held["Name"], held["AcctNum"]) == ("Rent income", "4050")  # both survive
            assert sim.stats.stale_refusals == 1  # refused once, re-read, re-merged, sent again
            assert sim.stats.api_writes - writes_before == 2
            (target,) = await hub.writeback.targets_of(TENANT)
            assert target.state is WriteState.APPLIED
            await hub.sync(TENANT, "books")  # the accountant's edit reaches the hub too
            async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
                record = await uow.records.get("LedgerAccount", account)
                assert (await uow.audit.verify()).ok
            assert record is not None
            assert (record.data["Name"], record.data["AccountNumber"]) == ("Rent income", "4050")
        finally:
            await hub.close()
            await sim.webhooks.stop()
