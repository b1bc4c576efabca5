"""``cadastre sync`` as a user runs it, against the RESO simulator in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CADASTRE = Path(sys.executable).with_name("cadastre")


@pytest.fixture(scope="module")
def mls() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", "--records", "250",
         "--bad-record-rate", "0.02", "--no-rate-limit"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("ready "), line
    yield line.split(" ", 1)[1]
    process.terminate()
    process.communicate(timeout=10)


@pytest.fixture
def run(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env |= {"COLUMNS": "120", "CADASTRE_LOG_LEVEL": "WARNING",
            "CADASTRE_AUSTIN__CLIENT_ID": "demo-client",
            "CADASTRE_AUSTIN__CLIENT_SECRET": "demo-secret",
            "CADASTRE_GATEWAY_ALLOW_HOSTS": '["127.0.0.0/8", "::1"]'}  # fmt: skip
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "austin.yaml").write_text(
        "mapping: austin\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
    )

    def invoke(*args: str, code: int = 0, **extra: str) -> str:
        done = subprocess.run(
            [str(CADASTRE), *args], cwd=tmp_path, env=env | extra, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == code, out
        return out

    invoke("tenants", "create", "acme", "--name", "Acme")
    # part 1's environment variables, moved into the vault
    invoke("credentials", "add", "austin", "-t", "acme", "--scheme", "oauth2_client_credentials",
           "--from-env", "CADASTRE_AUSTIN")  # fmt: skip
    return invoke


def add(run, url: str, name: str = "austin", credential: str = "austin", **config):
    settings = {"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token", "mapping": "austin",
                "page_size": 100, "gateway": {"allow_hosts": ["127.0.0.0/8", "::1"]},
                **config}  # fmt: skip
    run("connections", "add", name, "-t", "acme", "--system", "mls", "--connector", "mls/reso",
        "--credential", credential, "--config", json.dumps(settings))  # fmt: skip


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
