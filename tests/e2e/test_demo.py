"""The README's main job, as a user runs it: the installed console script in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CADASTRE = Path(sys.executable).with_name("cadastre")


def _run_demo(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env["COLUMNS"] = "120"
    proc = subprocess.run(
        [str(CADASTRE), "demo", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _count(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", output)
    assert match, f"{label!r} not in output:\n{output}"
    return int(match.group(1))


@pytest.mark.timeout(600)
def test_demo_runs_on_the_embedded_default_and_is_idempotent(tmp_path: Path) -> None:
    first = _run_demo(tmp_path, "--listings", "40")
    assert (tmp_path / "var" / "cadastre.db").is_file()
    assert _count(first, "MLS listing: created") == 40
    assert _count(first, "Listing records") == 40
    assert _count(first, "CRM listing price: refused (not the owner)") == 25
    assert _count(first, "MLS late delivery: refused (stale)") == 8
    assert _count(first, "MLS re-delivery: duplicate (idempotent)") == 40
    assert "invalid StandardStatus 'Sold-ish': rejected, nothing written" in first
    assert "audit chain: intact" in first
    cursor = r"demo-mls cursor \(committed with its last page\): .*ListingKey=L000040"
    assert re.search(cursor, first)

    second = _run_demo(tmp_path, "--listings", "40")
    assert _count(second, "MLS listing: duplicate (idempotent)") == 40
    assert _count(second, "Listing records") == 40
    assert "audit chain: intact" in second
