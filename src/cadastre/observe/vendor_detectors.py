"""The detectors that read vendor calls: error rate, latency drift against the connection's own
baseline, and behaviour change (status mix, error forms, response shapes).

Each reads one connection's minutes at a time (paused connections are skipped: a person stopped
them) and needs enough calls in its window, and in its baseline where it has one, before it
says anything: "no data" is never "changed".
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cadastre.observe import series
from cadastre.observe.detection import (
    BaseDetector,
    Finding,
    Param,
    Split,
    by_connection,
    first_minute,
    seconds_text,
    share_text,
    span_text,
    split_window,
    top_text,
    vendor_of,
)
from cadastre.observe.signals import OTHER, quantile

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from cadastre.observe.detection import DetectorInput
    from cadastre.ports import MinuteRollup


class ErrorRate(BaseDetector):
    name = "error_rate"
    params = MappingProxyType(
        {
            "window": Param("seconds", 300),
            "threshold": Param("share", 0.25),
            "min_calls": Param("count", 20),
        }
    )

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        p = self.settings(params)
        found = []
        for connection, rollups in by_connection(data).items():
            window = split_window(rollups, data.now, p["window"]).window
            failed, total = series.error_rate(window)
            if total < p["min_calls"] or failed / total < p["threshold"]:
                continue
            bad = Counter(
                {s: n for s, n in series.statuses(window).items() if not s.startswith("2")}
            )

            def shows(r: MinuteRollup) -> bool:
                f, t = series.error_rate([r])
                return t > 0 and f / t >= p["threshold"]

            changed = (
                f"error rate {share_text(failed / total)} ({failed} of {total} calls) over the "
                f"last {span_text(p['window'])}, at or above the {share_text(p['threshold'])} "
                "threshold"
            )
            if bad:
                changed += f" ({top_text(bad)})"
            found.append(
                Finding(
                    key=connection,
                    vendor=vendor_of(data, connection, rollups),
                    connection=connection,
                    changed=changed,
                    started=first_minute(window, shows),
                    facts={
                        "failed": failed,
                        "calls": total,
                        "rate": failed / total,
                        "threshold": p["threshold"],
                        "window": p["window"],
                        "statuses": dict(bad),
                    },
                )
            )
        return found


class LatencyDrift(BaseDetector):
    """The window's quantile against the connection's own: the baseline quantile is the median
    of its minutes' quantiles, not the quantile of all its calls pooled. Pooled, the drift's
    own first slow minutes, once the window moves past them, would lift the baseline within a
    few minutes (5 % of a baseline's calls decide its p95) and the alert would clear while the
    vendor is still slow; as a median of minutes, the baseline moves only once most of its
    minutes are slow, when slow has become the vendor's normal."""

    name = "latency_drift"
    params = MappingProxyType(
        {
            "window": Param("seconds", 300),
            "baseline": Param("seconds", 3600),
            "factor": Param("factor", 2.0),
            "min_delta": Param("amount", 0.25),
            "min_calls": Param("count", 20),
            "quantile": Param("quantile", 0.95),
        }
    )

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        p = self.settings(params)
        q = p["quantile"]
        label = f"p{q * 100:g}"
        found = []
        for connection, rollups in by_connection(data).items():
            split = split_window(rollups, data.now, p["window"], p["baseline"])
            if (
                series.calls(split.window) < p["min_calls"]
                or series.calls(split.baseline) < p["min_calls"]
                or not split.has_history
            ):
                continue
            now_q = quantile(series.latency_histogram(split.window), q)
            base_q = _median_quantile(split.baseline, q)
            if now_q is None or base_q is None:
                continue  # calls without timings (none timed): nothing to compare
            bar = max(base_q * p["factor"], base_q + p["min_delta"])
            if now_q < bar:
                continue

            def shows(r: MinuteRollup, bar: float = bar) -> bool:
                value = quantile(series.latency_histogram([r]), q)
                return value is not None and value >= bar

            ratio = f"{now_q / base_q:.1f}x" if base_q > 0 else "up from"
            found.append(
                Finding(
                    key=connection,
                    vendor=vendor_of(data, connection, rollups),
                    connection=connection,
                    changed=(
                        f"{label} {seconds_text(now_q)} over the last {span_text(p['window'])}, "
                        f"{ratio} its baseline {seconds_text(base_q)} (the "
                        f"{span_text(p['baseline'])} before)"
                    ),
                    started=first_minute(split.window, shows),
                    facts={
                        "quantile": q,
                        "value": now_q,
                        "baseline": base_q,
                        "factor": p["factor"],
                        "min_delta": p["min_delta"],
                        "calls": series.calls(split.window),
                        "baseline_calls": series.calls(split.baseline),
                        "window": p["window"],
                        "baseline_window": p["baseline"],
                    },
                )
            )
        return found


def _median_quantile(rollups: Iterable[MinuteRollup], q: float) -> float | None:
    values = sorted(
        v for r in rollups if (v := quantile(series.latency_histogram([r]), q)) is not None
    )
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def total_variation(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Half the L1 distance between two count mixes as shares: 0 = the same mix, 1 = nothing in
    common. Either mix empty: 0 (no evidence of a change)."""
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return 0.0
    return sum(abs(a.get(k, 0) / ta - b.get(k, 0) / tb) for k in set(a) | set(b)) / 2


class BehaviourChange(BaseDetector):
    """A vendor that changes behaviour without changing its schema: the status-code mix moves,
    error bodies take a new form, or an endpoint answers with key paths (or JSON types) its
    baseline never showed (an envelope key renamed or added, a number turned string).

    Error forms are told apart by fingerprint, but one whose sample reads like a baseline
    error's but for its digits is not new: ``injected 502`` beside a known ``injected 500`` is
    the same form with another status, which the status mix already weighs. Shapes are compared
    key path by key path against the union of the baseline's for that endpoint, with ``null``
    matching any type (records whose optional fields happen to be empty make many distinct
    fingerprints of one form), and only for endpoints the baseline saw answer (a new endpoint
    is new work, not a vendor changing). A connection with a schema drift event in the window
    has its shape changes explained by it and reported by ``schema_drift`` instead."""

    name = "behaviour_change"
    params = MappingProxyType(
        {
            "window": Param("seconds", 600),
            "baseline": Param("seconds", 3600),
            "threshold": Param("share", 0.3),
            "min_calls": Param("count", 20),
            "min_count": Param("count", 3),
        }
    )

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        p = self.settings(params)
        window_start = data.now - timedelta(seconds=p["window"])
        drifted = {str(e.data.get("connection", e.subject or "")) for e in data.drift
                   if window_start < e.time <= data.now}  # fmt: skip
        found = []
        for connection, rollups in by_connection(data).items():
            split = split_window(rollups, data.now, p["window"], p["baseline"])
            if (
                series.calls(split.baseline) < p["min_calls"]
                or not split.has_history
                or not split.window
            ):
                continue  # no baseline to hold the window against
            changes = [
                self._status_mix(split, p),
                _errors_change(split, p),
                None if connection in drifted else _shapes_change(split, p),
            ]
            shown = [c for c in changes if c is not None]
            if shown:
                facts: dict[str, Any] = {"window": p["window"], "baseline_window": p["baseline"]}
                for change in shown:
                    facts.update(change.facts)
                found.append(
                    Finding(
                        key=connection,
                        vendor=vendor_of(data, connection, rollups),
                        connection=connection,
                        changed="; ".join(c.text for c in shown),
                        started=min(c.started for c in shown),
                        facts=facts,
                    )
                )
        return found

    @staticmethod
    def _status_mix(split: Split, p: Mapping[str, Any]) -> _Change | None:
        base_mix, mix = series.statuses(split.baseline), series.statuses(split.window)
        distance = total_variation(mix, base_mix)
        if series.calls(split.window) < p["min_calls"] or distance < p["threshold"]:
            return None

        def shows(r: MinuteRollup) -> bool:
            return bool(total_variation(r.statuses, base_mix) >= p["threshold"])

        return _Change(
            f"status mix moved {distance:.2f} (total variation) over the last "
            f"{span_text(p['window'])}: {top_text(mix)}; the {span_text(p['baseline'])} "
            f"before: {top_text(base_mix)}",
            first_minute(split.window, shows),
            {"distance": distance, "statuses": dict(mix), "baseline_statuses": dict(base_mix)},
        )


@dataclass(frozen=True)
class _Change:
    text: str
    started: datetime
    facts: Mapping[str, Any]


def _errors_change(split: Split, p: Mapping[str, Any]) -> _Change | None:
    errors = _new_errors(split, p["min_count"])
    if not errors:
        return None
    shown = list(errors.values())[:3]
    listed = "; ".join(f"{e['status']} x{e['count']} {e['sample']!r}" for e in shown)
    if len(errors) > len(shown):
        listed += f"; and {len(errors) - len(shown)} more"
    return _Change(
        f"new error form(s) over the last {span_text(p['window'])}, not seen the "
        f"{span_text(p['baseline'])} before: {listed}",
        first_minute(split.window, lambda r: bool(set(r.errors) & set(errors))),
        {"new_errors": errors},
    )


def _shapes_change(split: Split, p: Mapping[str, Any]) -> _Change | None:
    shapes = _new_shapes(split, p["min_count"])
    if not shapes:
        return None
    fingerprints = {fp for s in shapes.values() for fp in s["fingerprints"]}
    listed = "; ".join(_shape_text(s) for s in shapes.values())
    return _Change(
        f"new response shape(s) over the last {span_text(p['window'])}, not seen the "
        f"{span_text(p['baseline'])} before: {listed}",
        first_minute(split.window, lambda r: bool(set(r.shapes) & fingerprints)),
        {"new_shapes": shapes},
    )


_DIGITS = re.compile(r"\d+")


def _new_errors(split: Split, min_count: int) -> dict[str, dict[str, Any]]:
    known = {fp for r in split.baseline for fp in r.errors}
    forms = {_DIGITS.sub("#", str(e.get("sample", ""))) for r in split.baseline
             for e in r.errors.values()}  # fmt: skip
    seen: dict[str, dict[str, Any]] = {}
    for r in split.window:
        for fp, e in r.errors.items():
            sample = str(e.get("sample", ""))
            if fp in known or fp == OTHER or _DIGITS.sub("#", sample) in forms:
                continue
            entry = seen.setdefault(fp, {"status": e.get("status", ""), "sample": sample,
                                         "count": 0})  # fmt: skip
            entry["count"] += int(e.get("count", 0))
    # Counted together: a vendor's new format comes in one form per status (a problem
    # document's title names it), each of which may be rare while all of them are not.
    if sum(e["count"] for e in seen.values()) < min_count:
        return {}
    return dict(sorted(seen.items(), key=lambda item: -int(item[1]["count"])))


def _key_types(keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    for key in keys:
        path, _, kind = str(key).rpartition(":")
        yield path, kind


def _new_shapes(split: Split, min_count: int) -> dict[str, dict[str, Any]]:
    """Endpoint -> what its window shapes show that its baseline's never did."""
    known: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in split.baseline:
        for s in r.shapes.values():
            if s.get("endpoint"):
                paths = known[str(s["endpoint"])]
                for path, kind in _key_types(s.get("keys", ())):
                    paths[path].add(kind)
    seen: dict[str, dict[str, Any]] = {}
    for r in split.window:
        for fp, s in r.shapes.items():
            endpoint = str(s.get("endpoint") or "")
            if endpoint not in known:
                continue
            paths = known[endpoint]
            added, retyped = [], []
            for path, kind in _key_types(s.get("keys", ())):
                if path not in paths:
                    added.append(path)
                elif kind != "null" and paths[path] - {"null"} and kind not in paths[path]:
                    retyped.append(f"{path} {'|'.join(sorted(paths[path] - {'null'}))} -> {kind}")
            if not added and not retyped:
                continue
            entry = seen.setdefault(endpoint, {
                "endpoint": endpoint, "count": 0, "added": set(), "retyped": set(),
                "fingerprints": set(),
            })  # fmt: skip
            entry["count"] += int(s.get("count", 0))
            entry["added"].update(added)
            entry["retyped"].update(retyped)
            entry["fingerprints"].add(fp)
    return {
        endpoint: {
            **e,
            "added": sorted(e["added"]),
            "retyped": sorted(e["retyped"]),
            "fingerprints": sorted(e["fingerprints"]),
        }
        for endpoint, e in seen.items()
        if e["count"] >= min_count
    }


def _shape_text(shape: Mapping[str, Any]) -> str:
    changes = [*(f"+{k}" for k in shape["added"][:5]), *shape["retyped"][:5]]
    more = len(shape["added"]) + len(shape["retyped"]) - len(changes)
    listed = ", ".join(changes) + (f" and {more} more" if more > 0 else "")
    return f"{shape['endpoint']} x{shape['count']} ({listed})"
