"""Named crash points for the kill -9 harness (RELIABILITY.md): with
``CADASTRE_FAILPOINTS=vault.refresh.answered`` (comma-separated; ``name:0.25`` fires with that
probability) a process SIGKILLs itself when it reaches the point, exactly where a crash hurts most.
Unset - always, outside the trials - a point costs one set lookup.
"""

from __future__ import annotations

import os
import random
import signal


def _armed(spec: str) -> dict[str, float]:
    armed = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, _, chance = entry.partition(":")
        armed[name] = float(chance) if chance else 1.0
    return armed


_ARMED = _armed(os.environ.get("CADASTRE_FAILPOINTS", ""))


def reach(name: str) -> None:
    chance = _ARMED.get(name)
    if chance is not None and random.random() < chance:  # noqa: S311 - a trial, not a secret
        os.kill(os.getpid(), signal.SIGKILL)
