"""``cadastre sync`` as a user runs it, against the RESO simulator in its own process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_env import add_reso, cli, set_up_austin, simulator

AUSTIN = "mapping: austin\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"


@pytest.fixture(scope="module")
def mls() -> Iterator[str]:
    yield from simulator(
        "reso", "--port", "0", "--records", "250", "--bad-record-rate", "0.02", "--no-rate-limit"
    )


@pytest.fixture
def run(tmp_path: Path):
    invoke = cli(tmp_path)
    set_up_austin(tmp_path, invoke, {"austin": AUSTIN})
    return invoke


def add(run, url: str, name: str = "austin", credential: str = "austin", **config):
    add_reso(run, url, name, credential, **{"mapping": "austin", "page_size": 100, **config})


def test_sync_pulls_the_feed_and_reports_what_it_did(run, mls: str) -> None:
    add(run, mls)
    out = run("sync", "austin", "-t", "acme")
    assert "read from the vendor" in out
    assert "250" in out
    assert "quarantined" in out
    again = run("sync", "austin", "-t", "acme")  # incremental: the overlap window only
    assert "already applied (duplicates)" in again
    full = run("sync", "austin", "-t", "acme", "--full")
    assert "250" in full


def test_sync_of_an_unknown_connection_says_so(run, mls: str) -> None:
    out = run("sync", "nowhere", "-t", "acme", code=2)
    assert "connection 'nowhere' does not exist" in out
    out = run("sync", "nowhere", code=2)
    assert "no tenant has a connection named 'nowhere'" in out


def test_the_tenant_is_needed_only_when_the_name_is_ambiguous(run, mls: str) -> None:
    add(run, mls, name="shared")
    assert "read from the vendor" in run("sync", "shared")  # only acme has it
    run("tenants", "create", "globex", "--name", "Globex")
    run("credentials", "add", "austin", "-t", "globex", "--scheme", "oauth2_client_credentials",
        "--from-env", "CADASTRE_AUSTIN")  # fmt: skip
    settings = {
        "base_url": f"{mls}/odata",
        "gateway": {"allow_hosts": ["127.0.0.0/8", "::1"]},
        "token_url": f"{mls}/oauth/token",
        "mapping": "austin",
    }
    run("connections", "add", "shared", "-t", "globex", "--system", "mls",
        "--connector", "mls/reso", "--credential", "austin",
        "--config", json.dumps(settings))  # fmt: skip
    out = run("sync", "shared", code=2)
    assert "acme, globex each have a connection named 'shared'" in out
    assert "read from the vendor" in run("sync", "shared", "-t", "globex")


def test_a_missing_mapping_file_is_named(run, mls: str) -> None:
    add(run, mls, name="dallas", mapping="dallas")
    out = run("sync", "dallas", "-t", "acme", code=2)
    assert "mapping 'dallas' not found" in out
    assert "Traceback" not in out


def test_a_refused_credential_stops_with_a_clear_error_and_no_secret(run, mls: str) -> None:
    run("credentials", "add", "wrong", "-t", "acme", "--scheme", "oauth2_client_credentials",
        "--from-env", "CADASTRE_WRONG", CADASTRE_WRONG__CLIENT_ID="demo-client",
        CADASTRE_WRONG__CLIENT_SECRET="canary-not-the-secret")  # fmt: skip
    add(run, mls, name="wrong", credential="wrong")
    out = run("sync", "wrong", "-t", "acme", code=1)
    assert "canary-not-the-secret" not in out
    assert "Traceback" not in out
    assert "refused" in out.lower() or "401" in out
    assert "needs_reauth" in out
    assert "credentials add wrong -t acme --replace" in out  # what to do about it
    listed = run("credentials", "list", "-t", "acme")
    assert "needs_reauth" in listed
    assert "canary-not-the-secret" not in listed


def test_bad_connector_settings_are_named(run, mls: str) -> None:
    add(run, mls, name="odd", page_size=0)
    out = run("sync", "odd", "-t", "acme", code=2)
    assert "page_size" in out
