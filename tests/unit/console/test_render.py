"""How pages show times, rates and durations, and that every value is escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cadastre.console.health import Health
from cadastre.console.render import DASH, _env, duration, percent, points, relative

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "shown"),
    [(0, "just now"), (44, "just now"), (45, "1 min ago"), (5 * 60, "5 min ago"),
     (89 * 60, "89 min ago"), (90 * 60, "2 h ago"), (35 * 3600, "35 h ago"),
     (36 * 3600, "2 d ago"), (-10 * 60, "in 10 min"), (-3 * 86_400, "in 3 d")],
)  # fmt: skip
def test_relative_times(seconds_ago: float, shown: str) -> None:
    assert relative(NOW - timedelta(seconds=seconds_ago), NOW) == shown


def test_a_time_is_shown_relative_and_absolute_in_utc() -> None:
    moment = datetime(2026, 11, 27, 10, 55, tzinfo=UTC).astimezone()  # any offset in
    text = _env.from_string("{{ t | when }}").render(t=moment, now=NOW + timedelta(hours=3))
    assert 'datetime="2026-11-27T10:55:00+00:00"' in text
    assert "65 min ago" in text
    assert "2026-11-27 10:55:00 UTC" in text
    assert _env.from_string("{{ t | when }}").render(t=None, now=NOW) == DASH


def test_missing_numbers_are_a_dash_never_zero() -> None:
    assert (percent(None), duration(None)) == (DASH, DASH)
    assert (percent(0.0), percent(0.0004), percent(0.623)) == ("0.0%", "<0.1%", "62.3%")
    assert [duration(s) for s in (0.0123, 1.5, 600, 3 * 3600, 3 * 86_400)] == [
        "12 ms", "1.5 s", "10 min", "3.0 h", "3.0 d",
    ]  # fmt: skip
    assert points([1.0, None, 0.25, None]) == "1,,0.25,"


def test_every_value_is_escaped() -> None:
    hostile = '<script>alert(1)</script>" onmouseover="x'
    macros: Any = _env.get_template("macros.html").make_module({"now": NOW})
    verdict = macros.verdict
    out = str(verdict(Health("failing", [hostile])))
    assert "<script>" not in out
    assert '" onmouseover' not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;x" in out
    page = _env.from_string("<p>{{ v }}</p>").render(v=hostile)  # autoescape on any template
    assert "<script>" not in page
