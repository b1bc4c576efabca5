"""Structured JSON logs with secret redaction and log-forging protection.

Every record leaves as one JSON object per line. Before it does, ``RedactingFilter`` replaces
(1) values of registered secrets wherever they appear, (2) values of keys that name secrets
(``password``, ``client_secret``, ``authorization`` ...) in structured extras, and (3) bearer
tokens / basic credentials / URL userinfo in free text. Control characters (newlines, ANSI escapes)
in messages are escaped so a vendor field cannot forge a log line (CWE-117).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

REDACTED = "[REDACTED]"

SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key|"
    r"signature|session)",
    re.IGNORECASE,
)
_FREE_TEXT = [
    # Authorization: Bearer abc / Basic abc
    (re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@"), r"\1:" + REDACTED + "@"),
    # key=value / key: value pairs whose key names a secret
    (
        re.compile(
            r"(?i)\b([a-z0-9_-]*(?:password|secret|token|api[-_]?key)[a-z0-9_-]*)"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        r"\1\2" + REDACTED,
    ),
]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]|\r|\n")

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class SecretRegistry:
    """Exact secret values to scrub from every log line (credentials resolved at run time)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        # Very short values would redact ordinary words; such secrets are refused at creation.
        if len(value) >= 6:
            with self._lock:
                self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return text


SECRETS = SecretRegistry()


def neutralise(text: str) -> str:
    """Escape control characters so one log record is always one line."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def redact_text(text: str) -> str:
    text = SECRETS.scrub(text)
    for pattern, replacement in _FREE_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    if SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = redact_value(key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": neutralise(record.getMessage()),
        }
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = neutralise(redact_text(self.formatException(record.exc_info)))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = True, stream: Any = None) -> None:
    """Install the redacting JSON handler on the ``cadastre`` logger (idempotent)."""
    logger = logging.getLogger("cadastre")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_cadastre", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._cadastre = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("cadastre") else f"cadastre.{name}")
