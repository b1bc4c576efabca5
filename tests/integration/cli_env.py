"""What the CLI integration tests share: a simulator in its own process, and ``cadastre`` run as a
user runs it, in a folder of its own with a clean environment and the demo MLS's login in
``CADASTRE_AUSTIN__*`` (moved into the vault with ``credentials add --from-env``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

CADASTRE = Path(sys.executable).with_name("cadastre")
LOOPBACK = ["127.0.0.0/8", "::1"]


def simulator(*args: str) -> Iterator[str]:
    """``python -m cadastre.simulators ARGS`` in its own process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cadastre.simulators", *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("ready "), line
    yield line.split(" ", 1)[1]
    process.terminate()
    process.communicate(timeout=10)


def cli(
    cwd: Path, *, columns: int = 120, env: Mapping[str, str] | None = None, stderr: bool = True
) -> Callable[..., str]:
    """A runner of ``cadastre ARGS`` in ``cwd``: it checks the exit code (``code=``) and returns
    what was printed (stdout, and stderr when ``stderr`` or the code is not 0)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    clean |= {"COLUMNS": str(columns), "CADASTRE_LOG_LEVEL": "WARNING",
              "CADASTRE_AUSTIN__CLIENT_ID": "demo-client",
              "CADASTRE_AUSTIN__CLIENT_SECRET": "demo-secret",
              "CADASTRE_GATEWAY_ALLOW_HOSTS": json.dumps(LOOPBACK), **(env or {})}  # fmt: skip

    def invoke(*args: str, code: int = 0, **extra: str) -> str:
        done = subprocess.run(
            [str(CADASTRE), *args], cwd=cwd, env=clean | extra, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout + done.stderr if stderr or code else done.stdout

    return invoke


def set_up_austin(cwd: Path, invoke: Callable[..., str], mappings: Mapping[str, str]) -> None:
    """The registry files ``mappings`` (name -> text) in ``cwd/mappings``, tenant ``acme`` and
    the credential ``austin`` from the environment."""
    (cwd / "mappings").mkdir()
    for name, text in mappings.items():
        (cwd / "mappings" / f"{name}.yaml").write_text(text)
    invoke("tenants", "create", "acme", "--name", "Acme")
    invoke("credentials", "add", "austin", "-t", "acme", "--scheme", "oauth2_client_credentials",
           "--from-env", "CADASTRE_AUSTIN")  # fmt: skip


def add_reso(
    invoke: Callable[..., str], url: str, name: str = "austin", credential: str = "austin",
    **config: object,
) -> None:  # fmt: skip
    """``cadastre connections add`` of a RESO connection to the simulator at ``url``."""
    settings = {"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "gateway": {"allow_hosts": LOOPBACK}, **config}  # fmt: skip
    invoke("connections", "add", name, "-t", "acme", "--system", "mls", "--connector", "mls/reso",
           "--credential", credential, "--config", json.dumps(settings))  # fmt: skip
