"""Pages from Jinja2 templates, with autoescaping always on: every value a page shows (tenant and
connection names, vendor error samples, record payloads) is data, and data is escaped.

Times are shown both ways, relative to the hub's clock ("5 min ago") and absolute in UTC, in a
``<time>`` element a script could re-read. Numbers that may be missing (no calls, no gauge yet)
show as a dash, never as zero.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jinja2.runtime import Context
    from starlette.requests import Request
    from starlette.responses import Response

HERE = Path(__file__).parent
DASH = "\u2014"

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=StrictUndefined,  # a misspelt name fails the page (and its test), not silently
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)


def relative(moment: datetime, now: datetime) -> str:
    seconds = (now - moment).total_seconds()
    span = abs(seconds)
    if span < 45:
        return "just now"
    if span < 90 * 60:
        amount, unit = round(span / 60), "min"
    elif span < 36 * 3600:
        amount, unit = round(span / 3600), "h"
    else:
        amount, unit = round(span / 86_400), "d"
    return f"in {amount} {unit}" if seconds < 0 else f"{amount} {unit} ago"


def absolute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pass_context
def when(context: Context, moment: datetime | None) -> Markup:
    if moment is None:
        return escape(DASH)
    iso = moment.astimezone(UTC).isoformat(timespec="seconds")
    stamp = absolute(moment)
    return Markup(
        '<time datetime="{iso}" title="{stamp}">{rel}</time> <span class="abs">{stamp}</span>'
    ).format(iso=iso, stamp=stamp, rel=relative(moment, context["now"]))


def percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return DASH
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def points(values: Sequence[float | None]) -> str:
    """A sparkline's ``data-points``: comma-separated, an empty item for "no data"."""
    return ",".join("" if v is None else f"{v:.6g}" for v in values)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


_env.filters.update(
    when=when, percent=percent, duration=duration, points=points, pretty_json=pretty_json
)


def base_of(request: Request) -> str:
    """Where the console is mounted (``/console``): links and forms are built on it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def page(
    request: Request, template: str, *, status: int = 200, now: datetime, **context: Any
) -> Response:
    visitor = getattr(request.state, "visitor", None)
    values = {"base": base_of(request), "visitor": visitor, "now": now, "title": "",
              "status": status, **context}  # fmt: skip
    values.setdefault("tenant", None)
    values.setdefault("tenants", [])
    return templates.TemplateResponse(request, template, values, status_code=status)


def text_of(value: Any) -> str:
    """A value for a table cell: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


_env.filters["text_of"] = text_of
