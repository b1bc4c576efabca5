from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from cadastre.observe import LABELS, SPECS, Metrics


def test_names_follow_the_conventions() -> None:
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names)), "a metric is named twice"
    for spec in SPECS:
        assert re.fullmatch(r"cadastre_[a-z_]+", spec.name), spec.name
        assert (spec.kind == "counter") == spec.name.endswith("_total"), spec.name
        assert set(spec.labels) <= LABELS, spec.name
        assert spec.help.endswith("."), spec.name


def test_every_declared_metric_is_exported_under_its_declared_name() -> None:
    metrics = Metrics()
    metrics.counter("cadastre_changes_applied_total").labels("t", "Listing", "applied").inc()
    metrics.histogram("cadastre_apply_seconds").labels("Listing").observe(0.01)
    text = generate_latest(metrics.registry).decode()
    for spec in SPECS:
        assert f"# TYPE {spec.name} {spec.kind}" in text, spec.name
    assert (
        'cadastre_changes_applied_total{entity="Listing",outcome="applied",tenant="t"} 1.0' in text
    )


def test_two_hubs_in_one_process_do_not_collide() -> None:
    Metrics()
    Metrics()


def test_asking_for_the_wrong_kind_is_an_error() -> None:
    metrics = Metrics()
    with pytest.raises(TypeError, match="not a gauge"):
        metrics.gauge("cadastre_changes_applied_total")
