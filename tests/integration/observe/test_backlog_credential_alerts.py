"""Item 7 for the hub's own state: outbound deliveries piling up while the subscriber simulator
fails, a vault credential nearing its end date, and a refresh the auth simulator refuses. Each
alert fires within its window, says what changed and what to do, and clears after recovery."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from pathlib import Path

import pytest

from cadastre.contract.events import EventEnvelope
from cadastre.errors import CredentialNeedsReauth
from cadastre.ports import BusMessage, CredentialStatus
from cadastre.simulators import FaultProfile, serve
from cadastre.simulators.auth import AuthSettings, AuthSimulator
from cadastre.simulators.subscriber import SubscriberSimulator
from cadastre.testing import FakeClock
from cadastre.webhooks.schedule import RetrySchedule
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock

from .harness import Timeline, alerting_hub, assert_names_everything, shipped


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


async def test_deliveries_piling_up_at_a_failing_subscriber(
    tmp_path: Path, clock: FakeClock
) -> None:
    window, threshold, for_, clear_for = 300, 8, 60, 60
    rule = shipped("delivery_backlog_growing", params={"window": window, "threshold": threshold},
                   for_=for_, clear_for=clear_for)  # fmt: skip
    subscriber = SubscriberSimulator(clock=clock)
    async with serve(subscriber.app) as running, alerting_hub(tmp_path, clock, rule) as hub:
        await hub.webhooks.subscriptions.add(
            TENANT, url=f"{running.url}/hooks", event_types=("cadastre.listing.*",),
            description="the platform's listing service",
        )  # fmt: skip
        # Retries every two minutes for an hour: deliveries wait out the outage.
        schedule = RetrySchedule(waits=(0.0, *([120.0] * 30)), jitter=0.0)
        sender = hub.webhooks.sender(schedule=schedule, rng=random.Random(1))
        dispatcher = hub.webhooks.dispatcher(hub.bus)
        published = 0

        async def listings_change() -> None:
            """Two listing events an interval, and the sender's attempts."""
            nonlocal published
            events = []
            for _ in range(2):
                published += 1
                events.append(EventEnvelope(
                    source="/mls/austin", type="cadastre.listing.updated.v1",
                    subject=f"L{published}", time=clock.now(), tenant=TENANT,
                    data={"entity": "Listing", "fields": {"ListPrice": published}},
                ))  # fmt: skip
            await dispatcher.handle(
                [BusMessage(e, f"cadastre.{TENANT}.listing.updated", 1) for e in events]
            )
            await sender.run_once()

        try:
            timeline = Timeline(hub, clock, "delivery_backlog_growing")
            await timeline.run(120, listings_change)
            assert timeline.made() == []
            assert len(subscriber.accepted()) == published  # every one delivered at once

            subscriber.faults = FaultProfile(error_rate=1.0)
            down = clock.now()
            fired = await timeline.until_firing(window + for_, listings_change)
            raised = await timeline.check_fired(fired, for_=for_)
            assert_names_everything(
                raised, vendor=None, connection=None, rollback=None,
                changed=["delivery_backlog", "at or above the 8 threshold"],
            )  # fmt: skip
            assert raised.data["key"] == "tenant"
            assert "deliveries list --status pending" in raised.data["action"]
            # 2 more an interval: the threshold is crossed in the 4th, then `for` holds
            assert fired - down <= timedelta(seconds=4 * 30 + for_ + timeline.interval)

            subscriber.faults = FaultProfile()
            recovered = clock.now()
            resolved = await timeline.until_resolved(120 + clear_for + 180, listings_change)
            await timeline.check_resolved(resolved, recovered=recovered, window=window,
                                          clear_for=clear_for)  # fmt: skip
            timeline.check_one_alert()
            assert len(subscriber.accepted()) == published  # the backlog was delivered
        finally:
            await sender.__aexit__(None, None, None)  # closes its gateways; it never ran a loop


async def test_a_credential_nearing_its_end_date(tmp_path: Path, clock: FakeClock) -> None:
    """The default rules as shipped: ``credential_expiring`` warns 7 days ahead (``for: 0``)
    and clears ``clear_for`` after the key is renewed."""
    async with alerting_hub(tmp_path, clock) as hub:
        rule = hub.alerts.rules.get("credential_expiring")
        assert rule is not None
        within, for_, clear_for = rule.params["within"], rule.for_, rule.clear_for
        ends = clock.now() + timedelta(days=30)
        await hub.vault.add(TENANT, "mls-key", "api_key", {"api_key": "key-0000000000000001"},
                            {"header": "X-Api-Key"}, expires_at=ends)  # fmt: skip
        await connect_reso(hub, "keyed-mls", "http://127.0.0.1:9", credential="mls-key")
        timeline = Timeline(hub, clock, "credential_expiring")
        await timeline.run(120)
        assert timeline.made() == []

        # Weeks pass: the key is now inside its warning.
        await timeline.skip_to(ends - timedelta(seconds=within) + timedelta(minutes=1))
        fired = await timeline.until_firing(for_ + timeline.interval)
        raised = await timeline.check_fired(fired, for_=for_)
        assert_names_everything(
            raised, vendor="mls/reso", connection="keyed-mls", rollback=None,
            changed=["credential 'mls-key' expires in 6 d 23 h", "it cannot renew itself"],
        )  # fmt: skip
        assert raised.data["key"] == "mls-key"
        assert raised.data["summary"] == "credential mls-key expires soon and cannot renew itself"
        assert "credentials rotate mls-key --tenant acme" in raised.data["action"]
        assert "key-0000000000000001" not in str(raised.data)

        renewed = clock.now()
        stored = await hub.vault.stored(TENANT, "mls-key")
        await hub.vault.update(stored, secrets={"api_key": "key-0000000000000002"},
                               expires_at=renewed + timedelta(days=365))  # fmt: skip
        resolved = await timeline.until_resolved(clear_for + 3 * timeline.interval)
        await timeline.check_resolved(resolved, recovered=renewed, window=0, clear_for=clear_for)
        timeline.check_one_alert()


async def test_a_refused_refresh_needs_a_person(tmp_path: Path, clock: FakeClock) -> None:
    """The auth simulator refuses a refresh (``invalid_grant``): the credential is
    ``needs_reauth``, ``credential_reauth`` fires at once and clears once it is reconnected."""
    vendor = AuthSimulator(clock=clock, settings=AuthSettings(token_ttl=600))
    async with serve(vendor.app) as running, alerting_hub(tmp_path, clock) as hub:
        rule = hub.alerts.rules.get("credential_reauth")
        assert rule is not None
        for_, clear_for = rule.for_, rule.clear_for
        grant = vendor.grant("demo-client", "listings.read")
        await hub.vault.add(
            TENANT, "crm-oauth", "oauth2_authorization_code",
            {"client_id": "demo-client", "client_secret": "demo-secret",
             "refresh_token": grant["refresh_token"]},
            {"token_url": f"{running.url}/oauth/token"},
        )  # fmt: skip
        await connect_reso(hub, "crm-mls", running.url, credential="crm-oauth")
        endpoint, defaults = await hub.token_endpoint(TENANT, "crm-oauth")

        async def calls() -> None:
            """The connection's calls need an access token now and then."""
            with contextlib.suppress(CredentialNeedsReauth):  # what the alert is about
                await hub.tokens.access_token(TENANT, "crm-oauth", endpoint, actor="test",
                                              defaults=defaults)  # fmt: skip

        timeline = Timeline(hub, clock, "credential_reauth")
        await timeline.run(120, calls)
        assert timeline.made() == []
        assert vendor.stats.refreshes >= 1  # the refreshes worked

        vendor.refuse_refreshes(400, 1)  # the user revoked the app; the next refresh is refused
        await timeline.skip_to(clock.now() + timedelta(seconds=600))  # the access token expires
        fired = await timeline.until_firing(for_ + 2 * timeline.interval, calls)
        raised = await timeline.check_fired(fired, for_=for_)
        assert (await hub.vault.stored(TENANT, "crm-oauth")).status is CredentialStatus.NEEDS_REAUTH
        assert_names_everything(
            raised, vendor=raised.data["vendor"], connection="crm-mls", rollback=None,
            changed=["credential 'crm-oauth' needs to be connected again",
                     "calls of crm-mls are refused"],
        )  # fmt: skip
        assert raised.data["summary"] == "credential crm-oauth needs to be connected again"
        assert "credentials connect crm-oauth --tenant acme" in raised.data["action"]
        assert raised.data["severity"] == "critical"

        again = vendor.grant("demo-client", "listings.read")  # the person reconnects it
        reconnected = clock.now()
        stored = await hub.vault.stored(TENANT, "crm-oauth")
        await hub.vault.update(stored, secrets={"refresh_token": again["refresh_token"]},
                               drop=("access_token",), status=CredentialStatus.ACTIVE,
                               reason="")  # fmt: skip
        resolved = await timeline.until_resolved(clear_for + 3 * timeline.interval, calls)
        await timeline.check_resolved(resolved, recovered=reconnected, window=0,
                                      clear_for=clear_for)  # fmt: skip
        timeline.check_one_alert()
        assert (await hub.vault.stored(TENANT, "crm-oauth")).status is CredentialStatus.ACTIVE
