"""Each console page with what a real small setup made: syncs of two RESO simulators (one with 503s
and bad records), the observations they left, a schema change, alerts and a conflict. And what an
operator does from the pages: replay the quarantine (a record comes in once its mapping is fixed),
resolve a subsystem alert, resolve a conflict."""

from __future__ import annotations

import html
import re

from cadastre.ports import AlertState, ConflictState
from tests.integration.console.conftest import (
    A_CONNECTION,
    B_CONNECTION,
    FIXED,
    A,
    World,
    alert_state,
    csrf,
    found,
    signed_in,
)


def rows(page: str, testid: str) -> list[str]:
    """The ``<tr>`` elements of ``data-testid=testid``, as text."""
    return re.findall(rf'<tr data-testid="{testid}".*?</tr>', page, flags=re.S)


def cell(row: str, name: str) -> str:
    found = re.search(rf'data-testid="{name}"[^>]*>(.*?)</(?:td|dd|p|tr)>', row, flags=re.S)
    assert found, name
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def unknown_status_item(world: World) -> str:
    (key,) = [k for k, kind in world.sims[A].defects.items() if kind == "unknown_status"]
    return key


async def quarantined(world: World) -> dict[str, str]:
    """Entry id -> external id ("" when the record had none) of A's open quarantine."""
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        return {q.id: q.external_id or "" for q in await uow.quarantine.open_items()}


async def test_the_fleet_shows_every_connection_with_its_signals(world: World) -> None:
    async with signed_in(world, "root") as root:
        page = (await root.get("/console/")).text
    (a_row,) = [r for r in rows(page, "fleet-row") if f'data-connection="{A_CONNECTION}"' in r]
    (b_row,) = [r for r in rows(page, "fleet-row") if f'data-connection="{B_CONNECTION}"' in r]
    # A: a critical alert is firing about it; B: a warning one.
    assert 'data-verdict="failing"' in a_row
    assert "critical alert" in a_row
    assert 'data-verdict="degraded"' in b_row
    assert 'data-state="closed"' in a_row  # its breaker rode out the 503s
    rate = cell(a_row, "error-rate")
    failed, calls = int(found(r"\((\d+)/", rate)), int(found(r"/(\d+)\)", rate))
    assert 0 < failed < calls  # the 503s, then the retries that got through
    assert cell(a_row, "p95").endswith(("ms", "s"))
    assert cell(a_row, "last-sync") != "—"
    assert "UTC" in cell(a_row, "last-sync")
    assert cell(a_row, "lag") != ""
    assert int(cell(a_row, "quarantined")) >= 1
    points = found(r'data-testid="spark-calls" data-points="([^"]*)"', a_row)
    values = [float(v) for v in points.split(",") if v]
    assert len(points.split(",")) == 60
    assert sum(values) == calls
    errors = found(r'data-testid="spark-errors" data-points="([^"]*)"', a_row)
    assert any(v and float(v) > 0 for v in errors.split(","))
    assert re.search(r'data-testid="count-failing">1 failing', page)


async def test_the_connection_page_tells_its_history(world: World) -> None:
    async with signed_in(world, "anna") as anna:
        answer = await anna.get(f"/console/t/{A}/connections/{A_CONNECTION}")
    assert answer.status_code == 200
    page = answer.text
    versions = rows(page, "version-row")
    assert len(versions) == 1
    assert 'data-version="1"' in versions[0]
    errors = rows(page, "error-row")
    assert errors
    assert "503" in errors[0]
    assert re.search(r'<code class="sample">[^<]+</code>', errors[0])  # a sample of the body
    syncs = rows(page, "sync-row")
    assert len(syncs) >= 1
    assert sum(int(re.findall(r"<td>(\d+)</td>", r)[0]) for r in syncs) == 2  # two runs ended well
    alerts = rows(page, "alert-row")
    assert {found(r'data-id="([^"]+)"', r) for r in alerts} == {
        "al_a_subsystem", "al_a_detector",
    }  # fmt: skip
    assert "error rate 62% (31 of 50 calls)" in page


async def test_replay_from_the_quarantine_applies_the_record_once_the_mapping_is_fixed(
    world: World,
) -> None:
    key = unknown_status_item(world)
    # Each sync that read the record set it aside again: one entry per reading.
    entries = [i for i, k in (await quarantined(world)).items() if k == key]
    entry = entries[0]
    async with signed_in(world, "anna") as anna:
        listed = (await anna.get("/console/quarantine")).text
        (row,) = [r for r in rows(listed, "quarantine-row") if f'data-id="{entry}"' in r]
        assert 'data-code="unknown_enum_value"' in row
        assert "Sold-ish" in row
        item = await anna.get(f"/console/t/{A}/quarantine/{entry}")
        assert item.status_code == 200
        assert "Sold-ish" in item.text
        assert key in item.text

        form = {"csrf": await csrf(anna, "/console/quarantine"), "connection": A_CONNECTION,
                "item": entry}  # fmt: skip
        before = await anna.post(f"/console/t/{A}/quarantine/replay", data=form)
        assert before.status_code == 200
        assert cell(before.text, "replay-resolved") == "0"
        assert cell(before.text, "replay-failing").startswith("1")
        assert entry in await quarantined(world)

        (world.folder / "test-mls.yaml").write_text(FIXED)  # the mapping file, fixed
        after = await anna.post(f"/console/t/{A}/quarantine/replay", data=form)
        assert after.status_code == 200, after.text
        assert cell(after.text, "replay-total") == "1"
        assert cell(after.text, "replay-resolved") == "1"
        assert entry not in await quarantined(world)
        async with world.hub.store.unit_of_work(A, read_only=True) as uow:
            canonical = await uow.xref.resolve("mls", A_CONNECTION, "Listing", key)
            assert canonical is not None
            record = await uow.records.get("Listing", canonical)
        assert record is not None
        assert record.data["StandardStatus"] == "Closed"

        # Replaying all of the connection: the record's other entries are settled; the other
        # defects (no key, a price of "N/A") are not the mapping's to fix and stay.
        left = await quarantined(world)
        everything = await anna.post(f"/console/t/{A}/quarantine/replay", data={
            "csrf": form["csrf"], "connection": A_CONNECTION,
        })  # fmt: skip
        assert cell(everything.text, "replay-total") == str(len(left))
        still = await quarantined(world)
        assert key not in still.values()
        assert still == {i: k for i, k in left.items() if k != key}
        assert still  # the other defects


async def test_a_replay_that_cannot_run_says_why(world: World) -> None:
    (world.folder / "test-mls.yaml").write_text("mapping: test-mls\nversion: [broken\n")
    async with signed_in(world, "anna") as anna:
        answer = await anna.post(f"/console/t/{A}/quarantine/replay", data={
            "csrf": await csrf(anna), "connection": A_CONNECTION,
        })  # fmt: skip
    assert answer.status_code == 409
    assert "test-mls" in cell(answer.text, "replay-error")
    assert len(await quarantined(world)) >= 1


async def test_mapping_coverage_names_what_the_mapping_misses(world: World) -> None:
    async with signed_in(world, "anna") as anna:
        page = (await anna.get("/console/mapping")).text
        (row,) = [r for r in rows(page, "coverage-row") if 'data-stream="Property"' in r]
        assert 'data-mapping="test-mls"' in row
        coverage = float(found(r'data-testid="coverage" data-value="([^"]+)"', row))
        assert 0.5 < coverage <= 1.0
        assert "StandardStatus" in cell(row, "unmapped-values")
        assert "Sold-ish" in cell(row, "unmapped-values")

        (world.folder / "test-mls.yaml").write_text(FIXED)
        fixed = (await anna.get("/console/mapping")).text
        (row,) = [r for r in rows(fixed, "coverage-row") if 'data-stream="Property"' in r]
        assert "Sold-ish" not in row


async def test_drift_history_lists_the_vendors_schema_change(world: World) -> None:
    async with signed_in(world, "anna") as anna:
        page = (await anna.get("/console/drift")).text
    (row,) = rows(page, "drift-row")
    assert f'data-connection="{A_CONNECTION}"' in row
    assert 'data-stream="Property"' in row
    assert "ACT_GreenCertified" in cell(row, "drift-added")
    assert "Edm.Boolean" in cell(row, "drift-added")


async def test_alerts_open_first_and_a_subsystem_alert_is_resolved_from_the_page(
    world: World,
) -> None:
    async with signed_in(world, "anna") as anna:
        page = (await anna.get("/console/alerts")).text
        opened = found(r'data-testid="alerts-open".*?</table>', page, 0)
        assert {found(r'data-id="([^"]+)"', r) for r in rows(opened, "alert-row")} == {
            "al_a_subsystem", "al_a_detector",
        }  # fmt: skip
        assert f"cadastre rollback connection {A_CONNECTION}" in opened  # the rollback named
        buttons = re.findall(r'data-testid="alert-resolve" data-id="([^"]+)"', page)
        assert buttons == ["al_a_subsystem"]  # a detector's alert clears itself
        assert 'data-testid="no-resolved-alerts"' in page

        token = await csrf(anna, "/console/alerts")
        refused = await anna.post(f"/console/t/{A}/alerts/al_a_detector/resolve",
                                  data={"csrf": token})  # fmt: skip
        assert refused.status_code == 409
        done = await anna.post(f"/console/t/{A}/alerts/al_a_subsystem/resolve",
                               data={"csrf": token})  # fmt: skip
        assert done.status_code == 303
        after = (await anna.get(done.headers["location"])).text
        assert 'data-testid="resolved-notice"' in after
        resolved = re.search(r'data-testid="alerts-resolved".*?</table>', after, flags=re.S)
        assert resolved
        assert 'data-id="al_a_subsystem"' in resolved.group(0)
        detail = (await anna.get(f"/console/t/{A}/alerts/al_a_subsystem")).text
        assert 'data-state="resolved"' in detail
    assert await alert_state(world, A, "al_a_subsystem") is AlertState.RESOLVED
    assert await alert_state(world, A, "al_a_detector") is AlertState.FIRING
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        trail = [e async for e in uow.audit.entries()]
    assert any(e.action == "alert.resolved" and e.actor == "console:anna" for e in trail)


async def test_a_conflict_is_resolved_from_the_review_page(world: World) -> None:
    conflict = world.ids["conflict"]
    async with signed_in(world, "anna") as anna:
        page = (await anna.get("/console/conflicts")).text
        (row,) = rows(page, "conflict-row")
        assert f'data-id="{conflict}"' in row
        assert "MobilePhone" in row
        bad = await anna.post(f"/console/t/{A}/conflicts/{conflict}/resolve", data={
            "csrf": await csrf(anna, "/console/conflicts"), "resolution": "whatever",
        })  # fmt: skip
        assert bad.status_code == 422
        done = await anna.post(f"/console/t/{A}/conflicts/{conflict}/resolve", data={
            "csrf": await csrf(anna, "/console/conflicts"), "resolution": "value",
            "value": "555-0199",
        })  # fmt: skip
        assert done.status_code == 303
        after = (await anna.get(done.headers["location"])).text
        assert 'data-testid="no-conflicts"' in after
        again = await anna.post(f"/console/t/{A}/conflicts/{conflict}/resolve", data={
            "csrf": await csrf(anna, "/console/conflicts"), "resolution": "keep_current",
        })  # fmt: skip
        assert again.status_code == 409
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        held = await uow.conflicts.get(conflict)
        assert held is not None
        record = await uow.records.get("Resident", held.record_id)
    assert record is not None
    assert held.state is ConflictState.RESOLVED
    assert held.resolved_by == "console:anna"
    assert record.data["MobilePhone"] == "555-0199"


async def test_credentials_show_status_expiry_and_use(world: World) -> None:
    async with signed_in(world, "root") as root:
        page = (await root.get("/console/credentials", params={"tenant": A})).text
    by_name = {found(r'data-name="([^"]+)"', r): r
               for r in rows(page, "credential-row")}  # fmt: skip
    assert set(by_name) == {"austin-login", "spare-key"}
    login = by_name["austin-login"]
    assert 'data-status="active"' in login
    assert A_CONNECTION in login
    assert "UTC" in cell(login, "credential-expires")  # the access token the sync got
    assert cell(by_name["spare-key"], "credential-expires") == "does not expire"
    assert "globex-login" not in page
