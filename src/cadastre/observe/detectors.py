"""Detectors: pure functions from a tenant's recent minutes to findings, which alert rules turn
into alerts (``observe.alerts`` owns the states; a detector only says what it sees now).

A detector is a small object with a ``name``, ``check_params`` (a ``ValueError`` naming the
parameter, at rule load), ``span`` (how many seconds of history it reads) and ``find``. It does
no I/O: the evaluator reads the store once into a ``DetectorInput`` (rollups over the longest
span, connections, credentials, drift events) and every rule's detector reads that.

Windows are in whole minutes, since rollups are (``detection`` says which minutes a window
holds). A finding's ``changed`` text names the measured value, the threshold or baseline it was
held against and the window, so an alert reads on its own; ``started`` is the first minute of
the window where the condition shows. Thresholds are inclusive.

- ``error_rate``: the failed share of calls over ``window`` is >= ``threshold``, with at
  least ``min_calls`` calls.
- ``latency_drift``: the ``quantile`` (p95) over ``window`` is >= ``factor`` x the baseline's
  and >= ``min_delta`` seconds above it, with ``min_calls`` in both.
- ``behaviour_change``: the status mix's total variation distance from the baseline's is >=
  ``threshold``; or an error form, or a response shape of an endpoint, never seen in the
  baseline is seen >= ``min_count`` times.
- ``backlog_growth``: gauge ``gauge`` rises across ``window`` and its last value is >=
  ``threshold``.
- ``credential_expiry``: a credential that cannot renew itself expires within ``within`` s.
- ``credential_reauth``: a credential is ``needs_reauth``.
- ``schema_drift``: a ``cadastre.schema.drifted.v1`` event within ``window`` (one finding per
  connection and stream).
- ``event``: never; subsystem alerts come from events and the evaluator only clears them.

A baseline without enough data - under ``min_calls``, or not reaching back into the first
quarter of its span (a new connection, a gap in the store) - never fires: "no data" is not
"changed". Paused connections are skipped by the call and backlog detectors (a person stopped
them; their lag growing is expected). docs/alerts.md has the parameters and what each counts.

Here: the registry and the public names. The shared parts (input, finding, parameter checks,
windows, wording) are in ``detection``; the detectors in ``vendor_detectors`` (calls) and
``state_detectors`` (gauges, credentials, drift, events).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from cadastre.observe.detection import (
    ConnectionInfo,
    CredentialInfo,
    Detector,
    DetectorInput,
    Finding,
    Param,
)
from cadastre.observe.state_detectors import (
    BACKLOG_GAUGES,
    BacklogGrowth,
    CredentialExpiry,
    CredentialReauth,
    Event,
    SchemaDrift,
)
from cadastre.observe.vendor_detectors import (
    BehaviourChange,
    ErrorRate,
    LatencyDrift,
    total_variation,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

DETECTORS: Mapping[str, Detector] = MappingProxyType(
    {
        d.name: d
        for d in (
            ErrorRate(),
            LatencyDrift(),
            BehaviourChange(),
            BacklogGrowth(),
            CredentialExpiry(),
            CredentialReauth(),
            SchemaDrift(),
            Event(),
        )
    }
)

__all__ = [
    "BACKLOG_GAUGES",
    "DETECTORS",
    "ConnectionInfo",
    "CredentialInfo",
    "Detector",
    "DetectorInput",
    "Finding",
    "Param",
    "total_variation",
]
