"""The Slack message of an alert event: whatever an event carries reaches Slack as text, never
as a mention or a link, in the notification line as in the blocks."""

from __future__ import annotations

from datetime import UTC, datetime

from cadastre.contract.events import EventEnvelope
from cadastre.webhooks.slack import slack_message

TRICK = "<!channel> & <https://evil.example|click>"


def raised(**data: object) -> EventEnvelope:
    return EventEnvelope(
        source="/cadastre/sync/reso/austin-mls", type="cadastre.alert.raised.v1",
        subject="austin-mls", time=datetime(2026, 11, 28, 9, 0, tzinfo=UTC), tenant="acme",
        data={"alert": "stream_held_by_unreadable_page", "severity": "warning", **data},
    )  # fmt: skip


def test_the_notification_line_escapes_what_the_event_says() -> None:
    message = slack_message(raised(summary=f"page unreadable: {TRICK}", connection=TRICK))
    text = message["text"]
    assert "<!channel>" not in text
    assert "<https://" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text


def test_the_blocks_escape_it_too_and_the_header_keeps_plain_text() -> None:
    message = slack_message(raised(summary=f"page unreadable: {TRICK}", changed=TRICK))
    header, *rest = message["blocks"]
    assert header["text"]["type"] == "plain_text"  # Slack shows plain text as it is
    assert TRICK in header["text"]["text"]
    shown = str(rest)
    assert "<!channel>" not in shown
    assert "&lt;!channel&gt;" in shown
