"""Slack incoming-webhook bodies of alert events: what a ``format: slack`` subscription is sent.

A Slack subscription takes ``cadastre.alert.*`` types only (``check_slack_types``): a record
change has nothing a person in a channel can act on. Its delivery body is a Slack message
(``text``, the notification line, and Block Kit ``blocks``): severity, vendor and connection,
what changed, since when and what to do, with the rollback command as code; a resolution says
when and by whom. The body is built once, at dispatch, and sent byte for byte on every attempt,
signed like every delivery (Slack ignores the headers; a Slack-compatible receiver may check
them).

Everything taken from an event is escaped for Slack's mrkdwn (``&``, ``<``, ``>``), so a vendor's
error text cannot mention ``<!channel>`` or forge a link, and cut to Block Kit's limits (a
header's 150 characters, a section's 3,000).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.contract.events import EventEnvelope

ALERT_FAMILY = "cadastre.alert."
RESOLVED = "cadastre.alert.resolved.v1"
HEADER_MAX = 150
TEXT_MAX = 3000
FIELD_MAX = 2000
_MARK = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
         "info": ":large_blue_circle:"}  # fmt: skip


def check_slack_types(types: Sequence[str]) -> None:
    """A Slack subscription's types must all be alert types; ``ConfigurationError`` naming the
    others."""
    other = [t for t in types if not t.startswith(ALERT_FAMILY)]
    if other:
        raise ConfigurationError(
            f"a slack subscription takes alert events only (cadastre.alert.raised.v1, "
            f"cadastre.alert.resolved.v1 or cadastre.alert.*), not {', '.join(other)}; "
            "subscribe a standard endpoint to the others"
        )


def render_slack(event: EventEnvelope) -> str:
    """The delivery body: the Slack message of an alert event, as JSON text."""
    return orjson.dumps(slack_message(event)).decode()


def slack_message(event: EventEnvelope) -> dict[str, Any]:
    data = event.data
    resolved = event.type == RESOLVED
    severity = _text(data.get("severity")) or "warning"
    summary = _text(data.get("summary")) or _text(data.get("alert")) or event.type
    changed = _text(data.get("changed")) or summary
    action = _text(data.get("action")) or "see the alert in the console"
    since = _moment(data.get("since")) or _moment(data.get("raised_at")) or event.time.isoformat()
    vendor = _text(data.get("vendor"))
    connection = _text(data.get("connection"))
    where = " / ".join(x for x in (vendor, connection) if x) or _text(data.get("credential")) or (
        f"tenant {event.tenant}")  # fmt: skip
    mark = ":white_check_mark:" if resolved else _MARK.get(severity, ":large_orange_circle:")
    state = "RESOLVED" if resolved else severity.upper()
    headline = f"{state}: {summary}"
    fields = [
        _field("Severity", severity),
        _field("Vendor / connection", where),
        _field("Since", since),
        _field("Owner", _text(data.get("owner")) or "-"),
    ]
    if resolved:
        fields.append(_field("Resolved", f"{_moment(data.get('resolved_at')) or '-'} by "
                                         f"{_text(data.get('resolved_by')) or '-'}"))  # fmt: skip
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _cut(f"{mark} {headline}", HEADER_MAX)}},
        {"type": "section", "fields": fields},
        _section("What changed", changed),
        _section("What to do" if not resolved else "It was", action),
    ]  # fmt: skip
    rollback = _text(data.get("rollback"))
    if rollback and not resolved:
        blocks.append(_section("Rollback", f"`{rollback}`"))
    ids = [f"tenant {event.tenant}", f"alert {_text(data.get('alert')) or '-'}"]
    if alert_id := _text(data.get("alert_id")):
        ids.append(f"id {alert_id}")
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _escape(" | ".join(ids))}]})  # fmt: skip
    # The notification line is mrkdwn too (Slack parses it for mentions and links): escaped.
    line = _escape(f"[{state}] {summary} ({where})")
    return {"text": _cut(line, TEXT_MAX), "blocks": blocks}


def _section(title: str, body: str) -> dict[str, Any]:
    text = f"*{title}*\n{_escape(body)}"
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, TEXT_MAX)}}


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{title}*\n{_escape(value)}", FIELD_MAX)}


def _escape(text: str) -> str:
    """Slack's mrkdwn escaping: its three control characters, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _moment(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return None
