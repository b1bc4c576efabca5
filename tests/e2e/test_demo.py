"""The README's main job, as a user runs it: the installed console script in an empty folder,
then the API read with the key it printed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CADASTRE = Path(sys.executable).with_name("cadastre")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env["COLUMNS"] = "100"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*([\d,]+)", output)
    assert match, f"{label!r} not in output:\n{output}"
    return int(match.group(1).replace(",", ""))


def _key(output: str) -> str:
    match = re.search(r"API key \(read, shown once\): (cad_\S+)", output)
    assert match, output
    return match.group(1)


def _wait_until_serving(url: str, process: subprocess.Popen[str]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(
                f"the server exited: {process.stdout.read() if process.stdout else ''}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def _read_the_api(url: str, key: str, listings: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    seen: list[dict[str, object]] = []
    cursor = None
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/listings", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            seen += body["data"]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == listings
        one = client.get(f"/v1/listings/{seen[0]['id']}")
        assert one.status_code == 200
        again = client.get(f"/v1/listings/{seen[0]['id']}",
                           headers={"If-None-Match": one.headers["ETag"]})  # fmt: skip
        assert again.status_code == 304
        active = client.get("/v1/listings", params={"status": "Active", "limit": 500}).json()
        assert active["data"]
        assert all(item["StandardStatus"] == "Active" for item in active["data"])
        assert (
            client.get("/v1/listings", headers={"Authorization": "Bearer nope"}).status_code == 401
        )


def _sign_in_to_the_console(url: str, out: str) -> None:
    """The printed operator signs in, and the fleet view shows the demo MLS the syncs measured."""
    found = re.search(r"console: (\S+) \(operator (\S+), password (\S+), shown once\)", out)
    assert found, out
    console_url, operator, password = found.groups()
    assert console_url == f"{url}/console/"
    with httpx.Client(base_url=url, timeout=10) as client:
        form = client.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert form.status_code == 200
        assert token, form.text
        fields = {"csrf": token.group(1), "next": "", "username": operator}
        wrong = client.post("/console/login", data={**fields, "password": password + "x"})
        assert wrong.status_code == 200
        assert "wrong username or password" in wrong.text
        assert "cadastre_console" not in client.cookies  # no session after a refusal
        token = re.search(r'name="csrf" value="([^"]+)"', wrong.text)
        assert token, wrong.text
        fields["csrf"] = token.group(1)
        signed_in = client.post("/console/login", data={**fields, "password": password},
                                follow_redirects=True)  # fmt: skip
        assert signed_in.status_code == 200, signed_in.text
        assert "demo-mls" in signed_in.text
        assert 'data-testid="fleet-row"' in signed_in.text


@pytest.mark.timeout(300)
def test_demo_syncs_then_the_printed_key_reads_the_api(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(CADASTRE), "demo", "--exit-after-sync", "--records", "300"], cwd=tmp_path,
        env=_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert (tmp_path / "var" / "cadastre.db").is_file()
    assert (tmp_path / "mappings" / "demo-mls.yaml").is_file()
    listings = _count(out, "Listing records")
    quarantined = _count(out, "records in quarantine (with reasons)")
    assert listings + quarantined == 300
    assert quarantined > 0  # the demo MLS sends a share of bad records
    assert _count(out, "MLS rate-limit violations") == 0  # the gateway kept to its window
    assert "audit chain: intact" in out
    key = _key(out)

    port = _free_port()
    server = subprocess.Popen(
        [str(CADASTRE), "serve", "--port", str(port)], cwd=tmp_path, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}", server)
        _read_the_api(f"http://127.0.0.1:{port}", key, listings)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


@pytest.mark.timeout(300)
def test_demo_serves_until_interrupted_and_runs_again(tmp_path: Path) -> None:
    port = _free_port()
    demo = subprocess.Popen(
        [str(CADASTRE), "demo", "--port", str(port), "--records", "100"], cwd=tmp_path,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "serving until interrupted" in line:
                break
        out = "".join(lines)
        assert "serving until interrupted" in out, out
        _read_the_api(f"http://127.0.0.1:{port}", _key(out), _count(out, "Listing records"))
        _sign_in_to_the_console(f"http://127.0.0.1:{port}", out)
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, "".join(lines) + rest

    # a second run finds the tenant and connection, and its records come back unchanged
    again = subprocess.run(
        [str(CADASTRE), "demo", "--exit-after-sync", "--records", "100"], cwd=tmp_path,
        env=_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert _count(again.stdout, "created") == 0
    assert _count(again.stdout, "Listing records") == _count(out, "Listing records")
