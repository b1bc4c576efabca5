"""``serve`` as a command in its own process: it prints where it listens, answers, and stops
cleanly (exit 0) on SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cadastre.cli.serve import serve

PROGRAM = "import typer; from cadastre.cli.serve import serve; typer.run(serve)"


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CADASTRE_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "CADASTRE_LOG_JSON": "false"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, *args], env=env, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_serve_answers_then_stops_on_sigint(tmp_path: Path) -> None:
    process = start(tmp_path, "--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+) ", line)
        assert found, line + process.stderr.read() if process.stderr else line
        response = httpx.get(f"{found.group(1)}/healthz", timeout=10)
        assert response.json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


def test_serve_on_a_bad_address_fails_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    app = typer.Typer()
    app.command()(serve)
    result = CliRunner().invoke(app, ["--host", "256.1.1.1", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "cannot listen on 256.1.1.1:0" in " ".join(result.output.split())
