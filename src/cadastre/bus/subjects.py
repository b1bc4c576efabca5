"""Subject patterns as NATS reads them, so the in-process bus filters exactly as JetStream does:
tokens split on ``.``, ``*`` matches one token, ``>`` (last) matches one or more."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

# Durable consumer names: JetStream refuses '.', '*', '>' and whitespace in them.
CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def check_consumer(name: str) -> str:
    if not CONSUMER_NAME.fullmatch(name):
        raise ConfigurationError(
            f"bus consumer name {name!r} must be 1-100 of A-Z, a-z, 0-9, '_' and '-'"
        )
    return name


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str) or not patterns:
        raise ConfigurationError("subscribe to a non-empty list of subject patterns")
    for pattern in patterns:
        tokens = pattern.split(".")
        bad = [
            t
            for i, t in enumerate(tokens)
            if not (_TOKEN.fullmatch(t) or t == "*" or (t == ">" and i == len(tokens) - 1))
        ]
        if bad or tokens[0] != "cadastre":
            raise ConfigurationError(
                f"subject pattern {pattern!r} must start with 'cadastre.' and hold tokens, '*' "
                "or a last '>'"
            )
    return tuple(patterns)


def matches(pattern: str, subject: str) -> bool:
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or part not in ("*", have[i]):
            return False
    return len(have) == len(want)


def matches_any(patterns: Sequence[str], subject: str) -> bool:
    return any(matches(p, subject) for p in patterns)
