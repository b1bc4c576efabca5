"""``cadastre webhooks inbox | refusals`` as an operator runs them, over a hub's SQLite file
holding a stored webhook, a failed one and refused requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cadastre.ports import InboxSettlement, InboxStatus
from cadastre.testing import FakeClock
from tests import webhook_connector as hooks
from tests.integration.cli_env import cli
from tests.integration.webhooks_in.conftest import CRM_SECRET, NOW, TENANT, open_hub
from tests.webhook_signers import OTHER_SECRET, lower, standard


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def test_the_inbox_and_the_refusals_are_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks.register(monkeypatch)
    clock = FakeClock(NOW)
    hub = await open_hub(clock, data_dir=tmp_path / "var")
    try:
        for msg_id in ("ok", "broken"):
            headers = lower(standard([CRM_SECRET], b"{}", clock.now(), msg_id))
            await hub.webhooks_in.receive(TENANT, "crm", method="POST", path="/", query="",
                                          headers=headers, body=chunks(b"{}"))  # fmt: skip
        forged = lower(standard([OTHER_SECRET["standard_webhooks"]], b"{}", clock.now(), "x"))
        for _ in range(3):
            with pytest.raises(Exception, match="does not match"):
                await hub.webhooks_in.receive(TENANT, "crm", method="POST", path="/", query="",
                                              headers={**forged, "user-agent": "mallory"},
                                              body=chunks(b"{}"))  # fmt: skip
        await hub.webhooks_in.writer.flush()
        async with hub.store.unit_of_work(TENANT) as uow:
            broken = await uow.webhooks_in.get("crm", "broken")
            assert broken is not None
            await uow.webhooks_in.settle(
                [InboxSettlement(broken.position, InboxStatus.FAILED, 8, "vendor down")]
            )
            await uow.commit()
    finally:
        await hub.close()
    run = cli(tmp_path, columns=200, env={"CADASTRE_MAPPINGS_DIR": str(tmp_path)})
    shown = json.loads(run("webhooks", "inbox", "--json"))
    assert {(c["connection"], c["status"], c["count"]) for c in shown["counts"]} == {
        ("crm", "pending", 1), ("crm", "failed", 1)
    }  # fmt: skip
    failed = [e for e in shown["entries"] if e["status"] == "failed"]
    assert [(e["message_id"], e["error"], e["attempts"]) for e in failed] == [
        ("broken", "vendor down", 8)
    ]
    table = run("webhooks", "inbox", "-s", "failed")
    assert "broken" in table
    assert "vendor down" in table
    refused = json.loads(run("webhooks", "refusals", "--json", "--hours", "100000"))
    (tally,) = refused["refusals"]
    assert (tally["connection"], tally["reason"], tally["count"]) == ("crm", "bad_signature", 3)
    assert tally["example"]["user-agent"] == "mallory"
    assert "webhook-signature" not in tally["example"]
    assert "bogus" in run("webhooks", "inbox", "-s", "bogus", code=2)
