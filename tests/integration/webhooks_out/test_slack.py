"""Slack-format subscriptions (docs/alerts.md): alert events reach a receiving endpoint on
loopback as Slack incoming-webhook messages - valid Block Kit by Slack's own SDK - carrying
severity, vendor and connection, what changed, since when and what to do; a standard
subscription to the same events still gets the signed CloudEvents body; and a Slack subscription
refuses anything but alert types."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
from slack_sdk.models.blocks import Block

from cadastre.contract.events import EventEnvelope, from_json
from cadastre.errors import ConfigurationError
from cadastre.observe.alerts import alert_event
from cadastre.ports import Alert, AlertState, CredentialStatus, DeliveryStatus, SubscriptionFormat
from cadastre.webhooks.out_events import alert as webhooks_alert
from tests.integration.webhooks_out.conftest import A, World, settle

ALERTS = ("cadastre.alert.*",)


def detector_alert(world: World) -> Alert:
    now = world.clock.now()
    return Alert(
        id="al_1", tenant=A, rule="vendor_behaviour_change", key="austin-mls",
        state=AlertState.FIRING, severity="critical", owner="integrations-oncall",
        vendor="reso@mls.example", connection="austin-mls",
        summary="reso@mls.example (austin-mls): the vendor's answers changed",
        changed="status 503 share 40% (20 of 50 calls) over 10 min; baseline 0%. New error "
        "<!channel> & <https://evil.example|click>",
        since=now - timedelta(minutes=12), action="Return the connection to its last version.",
        rollback="cadastre rollback connection austin-mls --tenant acme --to previous",
        facts={"statuses": {"503": 20}}, occurrences=1, raised_at=now, last_seen_at=now,
        resolved_at=None, source="/cadastre/observe",
    )  # fmt: skip


def slack_blocks(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The message's text and blocks, after Slack's SDK parsed and validated each block (its
    length limits too): what it gives back must be what we sent."""
    message = orjson.loads(body)
    assert set(message) == {"text", "blocks"}
    assert isinstance(message["text"], str)
    assert message["text"]
    assert 0 < len(message["blocks"]) <= 50
    for sent in message["blocks"]:
        parsed = Block.parse(sent)
        assert parsed is not None, sent
        assert parsed.to_dict() == sent  # validate_json runs inside: limits, required fields
    return message["text"], message["blocks"]


def slack_body(world: World, event: EventEnvelope) -> bytes:
    return next(r.body for r in world.sim.of(event.id) if b"blocks" in r.body)


def mrkdwn(blocks: list[dict[str, Any]]) -> str:
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(f["text"] for f in block.get("fields", ()))
        texts.extend(e["text"] for e in block.get("elements", ()))
    return "\n".join(texts)


async def test_alerts_reach_slack_as_messages_and_standard_endpoints_as_signed_cloudevents(
    embedded: World,
) -> None:
    world = embedded
    slack = await world.hub.webhooks.subscriptions.add(
        A, url=world.url, event_types=ALERTS, description="#oncall", format="slack"
    )
    world.sim.secrets.append(slack.secret.reveal())  # signed like any delivery
    standard = await world.subscribe(types=ALERTS)
    assert (slack.subscription.format, standard.subscription.format) == (
        SubscriptionFormat.SLACK, SubscriptionFormat.STANDARD)  # fmt: skip
    alert = detector_alert(world)
    raised = alert_event(alert, world.clock.now())
    resolved_alert = replace(alert, state=AlertState.RESOLVED,
                             resolved_at=world.clock.now() + timedelta(minutes=30))  # fmt: skip
    resolved = alert_event(resolved_alert, resolved_alert.resolved_at or alert.since,
                           resolved_by="cli")  # fmt: skip
    subsystem = webhooks_alert(A, "sub_x", world.clock.now(), {
        "alert": "webhook_delivery_dead", "severity": "warning", "subscription": "sub_x",
        "summary": "delivery dlv_1 to subscription sub_x failed all 8 attempts",
        "action": "`cadastre deliveries redeliver dlv_1 --tenant acme`",
    })  # fmt: skip
    listing = world.event()  # neither subscription takes it
    await world.publish(raised, resolved, subsystem, listing)
    await world.sender()
    await world.step(world.clock.now())

    deliveries = await world.deliveries()
    assert len(deliveries) == 6
    assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
    assert world.sim.of(listing.id) == []
    for event in (raised, resolved, subsystem):
        got = world.sim.of(event.id)
        assert len(got) == 2
        assert all(r.verified for r in got)
        bodies = {b"blocks" in r.body: r.body for r in got}
        # the standard endpoint: the event itself, CloudEvents JSON
        assert from_json(bodies[False]) == event
        text, blocks = slack_blocks(bodies[True])
        assert blocks[0]["type"] == "header"
        assert event.data["summary"] in blocks[0]["text"]["text"]
        assert event.data["summary"] in text

    text, blocks = slack_blocks(slack_body(world, raised))
    shown = mrkdwn(blocks)
    assert text.startswith("[CRITICAL] ")
    assert "*Severity*\ncritical" in shown
    assert "*Vendor / connection*\nreso@mls.example / austin-mls" in shown
    assert f"*Since*\n{alert.since.isoformat()}" in shown
    assert "*Owner*\nintegrations-oncall" in shown
    assert "*What changed*\nstatus 503 share 40%" in shown
    # what a vendor sent is escaped: no channel mention, no forged link
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in shown
    assert "<!channel>" not in shown
    assert "*What to do*\nReturn the connection to its last version." in shown
    assert "*Rollback*\n`cadastre rollback connection austin-mls --tenant acme --to previous`" in (
        shown)  # fmt: skip
    assert "id al_1" in shown

    _, blocks = slack_blocks(slack_body(world, resolved))
    shown = mrkdwn(blocks)
    assert blocks[0]["text"]["text"].startswith(":white_check_mark: RESOLVED: ")
    assert f"*Resolved*\n{resolved_alert.resolved_at.isoformat()} by cli" in shown  # type: ignore[union-attr]
    assert "Rollback" not in shown

    _, blocks = slack_blocks(slack_body(world, subsystem))
    shown = mrkdwn(blocks)
    assert "*What to do*\n`cadastre deliveries redeliver dlv_1 --tenant acme`" in shown
    assert f"*Since*\n{subsystem.time.isoformat()}" in shown


@pytest.mark.parametrize(
    "types", [("cadastre.listing.*",), ("cadastre.alert.raised.v1", "cadastre.listing.updated.v1")]
)
async def test_a_slack_subscription_takes_alert_types_only(
    embedded: World, types: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigurationError, match="a slack subscription takes alert events only"):
        await embedded.hub.webhooks.subscriptions.add(
            A, url=embedded.url, event_types=types, format="slack"
        )
    with pytest.raises(ConfigurationError, match="format 'teams' is not one of standard, slack"):
        await embedded.hub.webhooks.subscriptions.add(
            A, url=embedded.url, event_types=ALERTS, format="teams"
        )
    assert await embedded.hub.webhooks.subscriptions.all(A) == []  # nothing half made
    async with embedded.hub.store.unit_of_work(A, read_only=True) as uow:
        assert await uow.credentials.all() == []  # no orphan signing secret either


async def test_the_hub_evaluates_and_notifies_slack_end_to_end(embedded: World) -> None:
    """As ``cadastre serve`` runs it: the alert worker's first round finds a credential that
    needs reconnecting (rule credential_reauth, for 0), the event goes through the relay, the
    bus and the dispatcher, and the Slack endpoint gets its message, once."""
    world, hub = embedded, embedded.hub
    slack = await hub.webhooks.subscriptions.add(A, url=world.url, event_types=ALERTS,
                                                 format="slack")  # fmt: skip
    await hub.vault.add(A, "pms-key", "api_key", {"api_key": "k-1"},
                        status=CredentialStatus.NEEDS_REAUTH)  # fmt: skip
    async with hub.running():
        await settle(lambda: _accepted(world), timeout=20)
        (alert,) = await hub.alerts.list(A)
        assert (alert.rule, alert.key, alert.state) == ("credential_reauth", "pms-key",
                                                        AlertState.FIRING)  # fmt: skip
        (got,) = world.sim.accepted()
        text, blocks = slack_blocks(got.body)
        assert text.startswith("[CRITICAL] credential pms-key needs to be connected again")
        assert "`cadastre credentials connect pms-key --tenant acme`" in mrkdwn(blocks)
        # the next rounds find it still firing: no second message
        for _ in range(3):
            world.clock.advance(hub.settings.alert_eval_seconds)
            await asyncio.sleep(0.2)
        assert len(world.sim.accepted()) == 1
    [delivery] = await world.deliveries()
    assert delivery.subscription == slack.subscription.id


async def _accepted(world: World) -> bool:
    return len(world.sim.accepted()) >= 1
