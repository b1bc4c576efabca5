"""The state detectors as theory tables: backlogs, credentials, schema drift, events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cadastre.observe.detectors import DETECTORS, CredentialInfo
from cadastre.ports import CredentialStatus, MinuteRollup, SealedSecret, StoredCredential

from .detector_data import CONNECTION, NOW, VENDOR, ago, drift_event, gauges, given

# ----------------------------------------------------------------------------- backlogs

BACKLOG = {"gauge": "delivery_backlog", "window": 900, "threshold": 10}


def backlog(*values: float, connection: str = "") -> list[MinuteRollup]:
    """One sample a minute, the last one in the last closed minute."""
    n = len(values)
    return [gauges(n - i, connection=connection, delivery_backlog=v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("values", "params", "fires"),
    [
        ((2, 5, 12), BACKLOG, True),
        ((2, 5, 10), BACKLOG, True),  # at the threshold
        ((2, 5, 9), BACKLOG, False),
        ((12, 12, 12), BACKLOG, False),  # high but not growing
        ((12, 12, 12), {**BACKLOG, "rising": False}, True),
        ((20, 15, 12), BACKLOG, False),  # draining
        ((50,), BACKLOG, False),  # one sample says nothing of growth
        ((50,), {**BACKLOG, "rising": False}, True),
        ((), BACKLOG, False),
    ],
)
def test_backlog_growth_theory(
    values: tuple[float, ...], params: dict[str, Any], fires: bool
) -> None:
    assert bool(DETECTORS["backlog_growth"].find(given(backlog(*values)), params)) is fires


def test_backlog_reads_only_its_window_and_its_gauge() -> None:
    old = [gauges(m, connection="", delivery_backlog=1) for m in range(40, 20, -1)]
    flat = backlog(30, 30, 30)
    assert DETECTORS["backlog_growth"].find(given([*old, *flat]), BACKLOG) == []  # 1 is too old
    assert DETECTORS["backlog_growth"].find(given([*old, *flat]), {**BACKLOG, "window": 3600})
    other = [gauges(m, connection="", outbox_backlog=m * 100) for m in range(5, 0, -1)]
    assert DETECTORS["backlog_growth"].find(given(other), BACKLOG) == []


def test_tenant_backlog_finding() -> None:
    (finding,) = DETECTORS["backlog_growth"].find(given(backlog(3, 8, 11, 14)), BACKLOG)
    assert finding.key == "tenant"
    assert finding.connection is None
    assert finding.vendor is None
    assert finding.changed == (
        "delivery_backlog 14, up from 3 over the last 15 min, at or above the 10 threshold"
    )
    assert finding.started == ago(2)  # the run at or above the threshold began with 11


def test_sync_lag_of_a_connection_and_of_a_paused_one() -> None:
    lag = [gauges(m, sync_lag_seconds=(6 - m) * 600) for m in range(5, 0, -1)]
    params = {"gauge": "sync_lag_seconds", "window": 900, "threshold": 1800}
    (finding,) = DETECTORS["backlog_growth"].find(given(lag), params)
    assert finding.connection == finding.key == CONNECTION
    assert finding.vendor == VENDOR
    assert finding.changed.startswith("sync_lag_seconds 3000 s, up from 600 s over the last 15 min")
    assert DETECTORS["backlog_growth"].find(given(lag, paused=True), params) == []


# ----------------------------------------------------------------------------- credentials

DAY = 86400.0


def credential(left: float | None, *, status: str = "active", refreshable: bool = False,
               connections: tuple[str, ...] = (CONNECTION,)) -> CredentialInfo:  # fmt: skip
    expires = None if left is None else NOW + timedelta(seconds=left)
    return CredentialInfo("mls-key", status, expires, connections, refreshable)


@pytest.mark.parametrize(
    ("info", "fires"),
    [
        (credential(DAY), True),  # at the warning's edge
        (credential(DAY + 1), False),
        (credential(3600), True),
        (credential(-60), True),  # expired already
        (credential(None), False),  # never expires
        (credential(3600, refreshable=True), False),  # the hub renews it
        (credential(3600, status="needs_reauth"), False),  # credential_reauth says that
        (credential(3600, status="disabled"), False),
    ],
)
def test_credential_expiry_theory(info: CredentialInfo, fires: bool) -> None:
    found = DETECTORS["credential_expiry"].find(given(credentials=[info]), {"within": DAY})
    assert bool(found) is fires


def test_credential_expiry_finding() -> None:
    (soon,) = DETECTORS["credential_expiry"].find(
        given(credentials=[credential(DAY + 3 * 3600 + 60)]), {"within": 7 * DAY}
    )
    assert soon.key == "mls-key"
    assert soon.connection == CONNECTION
    assert soon.vendor == VENDOR
    assert soon.changed == (
        "credential 'mls-key' expires in 1 d 3 h (at 2026-11-28T13:01:00+00:00), inside the 7 d "
        "warning; it cannot renew itself"
    )
    assert soon.started == NOW + timedelta(seconds=DAY + 3 * 3600 + 60 - 7 * DAY)
    (gone,) = DETECTORS["credential_expiry"].find(
        given(credentials=[credential(-90, connections=("a", "b"))]), {"within": DAY}
    )
    assert gone.changed == "credential 'mls-key' expired 1 min ago (at 2026-11-27T09:58:30+00:00)"
    assert gone.connection is None  # two connections use it; facts list them
    assert gone.facts["connections"] == ["a", "b"]


def stored(scheme: str, *secrets: str) -> StoredCredential:
    sealed = {name: SealedSecret(name, "k1", b"w", b"c") for name in secrets}
    return StoredCredential(
        tenant="acme", name="c", scheme=scheme, status=CredentialStatus.ACTIVE, meta={},
        version=1, updated_at=NOW, expires_at=NOW, secrets=sealed,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("credential_row", "refreshable"),
    [
        (stored("oauth2_client_credentials", "client_id", "client_secret"), True),
        (stored("oauth2_authorization_code", "client_id", "refresh_token"), True),
        (stored("oauth2_authorization_code", "client_id", "access_token"), False),
        (stored("api_key", "api_key"), False),
        (stored("basic", "username", "password"), False),
    ],
)
def test_credential_info_of_a_stored_credential(
    credential_row: StoredCredential, refreshable: bool
) -> None:
    info = CredentialInfo.of(credential_row, ["b", "a"])
    assert info.refreshable is refreshable
    assert info.connections == ("a", "b")
    assert info.status == "active"
    assert info.expires_at == NOW


def test_credential_reauth_theory_and_since_when() -> None:
    reauth = credential(None, status="needs_reauth")
    flagged = [gauges(m, credential_needs_reauth=1) for m in (12, 11, 10)]
    (finding,) = DETECTORS["credential_reauth"].find(given(flagged, credentials=[reauth]), {})
    assert finding.key == "mls-key"
    assert finding.connection == CONNECTION
    assert finding.changed == (
        f"credential 'mls-key' needs to be connected again (status needs_reauth); calls of "
        f"{CONNECTION} are refused until then"
    )
    assert finding.started == ago(12)
    (unknown,) = DETECTORS["credential_reauth"].find(given(credentials=[reauth]), {})
    assert unknown.started is None  # the sampler never saw it turn: since when is not known
    active = [credential(None), credential(60, status="disabled")]
    assert DETECTORS["credential_reauth"].find(given(credentials=active), {}) == []


# ----------------------------------------------------------------------------- schema drift


@pytest.mark.parametrize(
    ("age", "fires"),
    [
        (timedelta(0), True),  # now
        (timedelta(seconds=3599), True),
        (timedelta(seconds=3600), False),  # the window is (now - window, now]
        (-timedelta(seconds=1), False),  # not yet (a clock ahead of ours)
    ],
)
def test_schema_drift_theory(age: timedelta, fires: bool) -> None:
    event = drift_event(NOW - age, added={"X": "Edm.String"})
    found = DETECTORS["schema_drift"].find(given(drift=[event]), {"window": 3600})
    assert bool(found) is fires


def test_drift_events_of_one_stream_merge_and_streams_stay_apart() -> None:
    events = [
        drift_event(ago(30), added={"ACT_GreenCertified": "Edm.Boolean"}),
        drift_event(ago(10), removed={"ACT_HOAName": "Edm.String"},
                    retyped={"ACT_Waterfront": {"was": "Edm.Boolean", "is": "Edm.String"}},
                    new_values={"StandardStatus": ["Active Kick Out"]}),
        drift_event(ago(5), stream="Media", added={"Caption": ""}),
    ]  # fmt: skip
    found = DETECTORS["schema_drift"].find(given(drift=events), {"window": 3600})
    by_key = {f.key: f for f in found}
    assert set(by_key) == {f"{CONNECTION}/Property", f"{CONNECTION}/Media"}
    prop = by_key[f"{CONNECTION}/Property"]
    assert prop.changed == (
        "Property schema changed (added ACT_GreenCertified (Edm.Boolean); removed ACT_HOAName; "
        "retyped ACT_Waterfront Edm.Boolean -> Edm.String; new values StandardStatus: Active "
        "Kick Out); 2 drift event(s) in the last 1 h"
    )
    assert prop.started == ago(30)
    assert prop.connection == CONNECTION
    assert prop.vendor == VENDOR
    assert by_key[f"{CONNECTION}/Media"].changed.startswith("Media schema changed (added Caption)")


def test_the_event_detector_never_finds_anything() -> None:
    everything = given(backlog(1, 50), credentials=[credential(-1)], drift=[drift_event(NOW)])
    assert DETECTORS["event"].find(everything, {}) == []
