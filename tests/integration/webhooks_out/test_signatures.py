"""Deliveries are signed per Standard Webhooks, checked on the subscriber's side by the reference
package (``standardwebhooks.Webhook``), through a secret rotation: while the old secret overlaps,
each delivery carries two signatures, one per secret; after it, only the new one's. The body is
CloudEvents structured-mode JSON, and the secret is never readable again after it was shown."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from cadastre.ports import CredentialStatus
from tests.integration.webhooks_out.conftest import A, World, settle


def headers_of(received) -> dict[str, str]:
    return {
        "webhook-id": received.webhook_id,
        "webhook-timestamp": received.timestamp,
        "webhook-signature": received.signature,
    }


async def test_signatures_verify_with_the_reference_package_through_a_rotation(
    embedded: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = embedded
    created = await world.subscribe(verify=False)  # the reference package checks, not the sim
    old = created.secret.reveal()
    sub = created.subscription.id
    await world.sender()

    first = world.event(subject="L1")
    await world.publish(first)
    await settle(lambda: _received(world, 1))
    got = world.sim.received[0]
    assert got.webhook_id == first.id
    parsed = Webhook(old).verify(got.body, headers_of(got))
    assert parsed["id"] == first.id
    assert parsed["type"] == "cadastre.listing.updated.v1"
    assert parsed["tenant"] == A
    assert "dataschema" not in parsed  # attributes not set are left out
    cloud = JSONFormat().read(None, got.body)  # the CloudEvents SDK reads it as an event
    assert (cloud.get_id(), cloud.get_source(), cloud.get_subject()) == (first.id, first.source,
                                                                         "L1")  # fmt: skip
    assert got.signature.count("v1,") == 1

    rotated = await world.hub.webhooks.subscriptions.rotate_secret(
        A, sub, overlap=timedelta(minutes=2), actor="test"
    )
    new = rotated.secret.reveal()
    assert new != old
    assert rotated.previous_valid_until == world.clock.now() + timedelta(minutes=2)
    second = world.event(subject="L2")
    await world.publish(second)
    await settle(lambda: _received(world, 2))
    got = world.sim.received[1]
    assert got.signature.count("v1,") == 2  # both secrets sign during the overlap
    for secret in (new, old):
        assert Webhook(secret).verify(got.body, headers_of(got))["id"] == second.id
    assert got.signature.split()[0] == _signature_of(new, got)  # the new one first

    world.clock.advance(150)  # past the overlap
    third = world.event(subject="L3")
    await world.publish(third)
    await settle(lambda: _received(world, 3))
    got = world.sim.received[2]
    assert got.signature.count("v1,") == 1
    Webhook(new).verify(got.body, headers_of(got))
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, headers_of(got))

    # The secret lives in the vault, sealed; each version was decrypted once, for signing.
    stored = await world.hub.vault.stored(A, created.subscription.credential)
    assert (stored.scheme, stored.status) == ("webhook_secret", CredentialStatus.ACTIVE)
    reads = await world.hub.vault.reads(A, created.subscription.credential)
    assert sorted(r.purpose for r in reads) == ["rotate", "sign", "sign"]
    listed = await world.hub.webhooks.subscriptions.all(A)
    for secret in (old, new):
        assert secret not in repr(listed)
        assert secret not in caplog.text
        assert secret.removeprefix("whsec_") not in caplog.text


async def _received(world: World, count: int) -> bool:
    return len(world.sim.received) >= count


def _signature_of(secret: str, received) -> str:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(int(received.timestamp), UTC)
    return Webhook(secret).sign(received.webhook_id, when, received.body.decode())


async def test_the_subscriber_refuses_a_wrong_secret_and_the_delivery_is_retried(
    embedded: World,
) -> None:
    world = embedded
    await world.subscribe(verify=False)
    world.sim.secrets = ["whsec_" + "A" * 43 + "="]  # not the subscription's secret
    await world.sender()
    event = world.event()
    await world.publish(event)
    await settle(lambda: _received(world, 1))
    assert world.sim.received[0].verified is False
    await settle(lambda: _failed_once(world))


async def _failed_once(world: World) -> bool:
    [delivery] = await world.deliveries()
    return delivery.attempts == 1 and delivery.last_status == 401


async def test_no_signing_secret_is_in_the_database_in_plaintext(embedded: World) -> None:
    """The raw SQLite files after a subscription was created, used, rotated and used again: its
    secrets (whole, or their base64 key) appear nowhere, though the tables are there."""
    world = embedded
    created = await world.subscribe()
    await world.sender()
    await world.publish(world.event(subject="L1"))
    await settle(lambda: _received(world, 1))
    rotated = await world.hub.webhooks.subscriptions.rotate_secret(
        A, created.subscription.id, actor="test"
    )
    world.sim.secrets.append(rotated.secret.reveal())
    await world.publish(world.event(subject="L2"))
    await settle(lambda: _received(world, 2))
    assert all(r.verified for r in world.sim.received)
    database = world.hub.settings.data_dir / "cadastre.db"
    raw = b"".join(p.read_bytes() for p in database.parent.glob(f"{database.name}*"))
    assert created.subscription.credential.encode() in raw  # the scan sees the rows
    for secret in (created.secret.reveal(), rotated.secret.reveal()):
        for shown in (secret, secret.removeprefix("whsec_")):
            assert shown.encode() not in raw
