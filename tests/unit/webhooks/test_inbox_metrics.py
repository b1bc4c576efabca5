"""``cadastre_webhooks_received_total``: every webhook let in is counted by connection and outcome
(stored, or duplicate: held already), whether the requests came alone or shared a commit."""

from __future__ import annotations

import asyncio

from cadastre.observe import Metrics
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.webhooks.inbox import WebhookReceiver
from tests.unit.webhooks.test_inbox_receiver import BLOCK, KEY, NOW, connect, receive


def received(metrics: Metrics, outcome: str, connection: str = "crm") -> float:
    labels = {"connection": connection, "outcome": outcome}
    return metrics.registry.get_sample_value("cadastre_webhooks_received_total", labels) or 0.0


async def test_stored_and_duplicate_webhooks_are_counted() -> None:
    clock = FakeClock(NOW)
    kit = VaultKit(clock)
    await kit.vault.add("acme", "hooks", "webhook_secret", {"secret": KEY})
    await connect(kit, BLOCK)
    metrics = Metrics()
    receiver = WebhookReceiver(
        kit.store, kit.vault, clock, public_url="https://hub.example", metrics=metrics
    )
    await receive(receiver, clock, "m0")  # alone in its commit
    # 30 at once share commits; 10 of them are replays of a message held already
    ids = [f"m{i}" for i in range(1, 21)] + ["m0"] * 10
    results = await asyncio.gather(*[receive(receiver, clock, i) for i in ids])
    assert [r.stored for r in results] == [True] * 20 + [False] * 10
    assert (received(metrics, "stored"), received(metrics, "duplicate")) == (21.0, 10.0)
    await receiver.aclose()
