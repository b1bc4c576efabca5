"""Structured JSON logs with secret redaction and log-forging protection.

Every record leaves as one JSON object per line (or, with ``json=False``, one plain text line).
Before it does, ``RedactingFilter`` replaces (1) values of registered secrets wherever they appear,
(2) values of keys that name secrets (``password``, ``client_secret``, ``authorization`` ...) in
structured extras, and (3) bearer tokens / basic credentials / ``Authorization`` values / URL
userinfo in free text. The formatters redact tracebacks and stacks the same way. Control
characters (newlines, ANSI escapes) are escaped so a vendor field cannot forge a log line
(CWE-117).

Every line also says where it was written (``correlation``): ``trace_id`` and ``span_id`` of the
current OpenTelemetry span when one is valid (``observe.tracing`` installs the SDK so there is
one), ``tenant`` and ``connection`` from ``observe.context`` when set. They are read when the
record is formatted, which the handler does in the logging call itself, in the caller's context.
An extra of the same name given to the call wins: it is the more specific.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from opentelemetry import trace

from cadastre.observe.context import current

REDACTED = "[REDACTED]"

SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|authorization|cookie|"
    r"credential|private[-_]?key|signature|session)",
    re.IGNORECASE,
)
_FREE_TEXT = [
    # Authorization: Bearer abc / Basic abc
    (re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # Authorization: <any scheme> <credential>, Authorization=<credential>, JSON-quoted or not
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[=:]\s*[\"']?)"
            r"([A-Za-z][A-Za-z0-9-]*\s+)?[^\s,;&\"']+"
        ),
        r"\1\2" + REDACTED,
    ),
    # scheme://user:password@host and scheme://:password@host. The password runs to the last '@'
    # before the path, so one that contains '@' is redacted whole.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s?#]*@"), r"\1:" + REDACTED + "@"),
    # key=value / key: value pairs whose key names a secret
    (
        re.compile(
            r"(?i)\b([a-z0-9_-]*(?:pass(?:word|wd|phrase)|pwd|secret|token|api[-_]?key|"
            r"access[-_]?key|private[-_]?key)[a-z0-9_-]*)"
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
    """Exact secret values to scrub from every log line (credentials and tokens as the vault
    decrypts or receives them). The newest ``MAX_VALUES`` are kept: tokens rotate for as long as
    the hub runs, and a dead token that old is no longer worth a comparison per log line."""

    _lock: ClassVar[threading.Lock] = threading.Lock()

    MIN_LENGTH: ClassVar[int] = 6
    MAX_VALUES: ClassVar[int] = 4096

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._longest_first: tuple[str, ...] = ()  # rebuilt on add; scrub runs per log line

    def add(self, value: str) -> None:
        """Scrub ``value`` from every later log line.

        Values shorter than ``MIN_LENGTH`` are *not* scrubbed by value: replacing them everywhere
        would eat ordinary words and numbers, and credentials legitimately carry short non-secret
        fields (a ``client_id``, a region). A short secret is still redacted where its key names a
        secret (``password=...``, an extra named ``client_secret``) or its shape gives it away
        (bearer tokens, URL userinfo) - but not when it appears bare in free text."""
        if len(value) < self.MIN_LENGTH:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            while len(self._values) > self.MAX_VALUES:
                self._values.popitem(last=False)
            self._longest_first = tuple(sorted(self._values, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for value in self._longest_first:
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


def correlation() -> dict[str, str]:
    """``trace_id`` and ``span_id`` (hex) of the current span, when one is valid; ``tenant`` and
    ``connection``, when set (``observe.context``)."""
    found: dict[str, str] = {}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        found["trace_id"] = trace.format_trace_id(span.trace_id)
        found["span_id"] = trace.format_span_id(span.span_id)
    found.update(current())
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": neutralise(record.getMessage()),
        }
        entry.update(correlation())
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = neutralise(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = neutralise(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatStack(stack_info))


class PlainFormatter(logging.Formatter):
    """``LEVEL logger: message [tenant=... connection=... trace=...]`` for people at a
    terminal, with the JSON formatter's guarantees: the message, traceback and stack are
    redacted, and control characters (newlines included) are escaped, so one record is one line
    and a vendor value cannot forge another. The bracket holds what of ``correlation`` is known,
    without the span id (the trace id finds the trace; the span is in it)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Not super().format(): it would reuse a traceback another handler cached unredacted.
        record.message = redact_text(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record) + _brief(correlation())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return neutralise(text)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatStack(stack_info))


def _brief(found: dict[str, str]) -> str:
    shown = {"tenant": "tenant", "connection": "connection", "trace_id": "trace"}
    where = " ".join(f"{name}={found[key]}" for key, name in shown.items() if key in found)
    return f" [{where}]" if where else ""


def configure_logging(level: str = "INFO", *, json: bool = True, stream: Any = None) -> None:
    """Install the redacting handler on the ``cadastre`` logger (idempotent): JSON lines, or
    plain ``LEVEL logger: message`` lines when ``json`` is false - redacted and one line each
    either way."""
    logger = logging.getLogger("cadastre")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_cadastre", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._cadastre = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else PlainFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    # httpx logs every request's full URL, query string included, at INFO; a query may carry a
    # vendor's API key. The gateway meters calls itself, path only.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("cadastre") else f"cadastre.{name}")
