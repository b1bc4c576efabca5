"""An alert about a subscription names its endpoint by origin only: the path of an
incoming-webhook URL (Slack's) is the credential, and alerts reach the console and chat."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from cadastre.ports import Subscription, SubscriptionStatus
from cadastre.webhooks.out_events import disabled_alert, endpoint_origin

SECRET_PATH = "/services/T000/B000/XXXXXXXXsecretXXXXXXXX"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_the_origin_keeps_scheme_host_and_port_only() -> None:
    assert endpoint_origin(f"https://hooks.example.com{SECRET_PATH}?x=1") == (
        "https://hooks.example.com/..."
    )
    assert endpoint_origin("http://127.0.0.1:8123/in") == "http://127.0.0.1:8123/..."
    assert endpoint_origin("not a url") == "(unreadable URL)"


def test_a_disabled_subscription_alert_does_not_carry_the_url_path() -> None:
    off = Subscription(
        id="sub_1", url=f"https://hooks.example.com{SECRET_PATH}",
        event_types=("cadastre.alert.*",),
        description="", status=SubscriptionStatus.DISABLED, status_reason="410 Gone",
        failing_since=NOW, credential="whsec-sub_1", created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    event = disabled_alert("acme", off, NOW, 410, "gone")
    text = orjson.dumps(event.model_dump(mode="json")).decode()
    assert "hooks.example.com" in text
    assert "secret" not in text
    assert "B000" not in text
