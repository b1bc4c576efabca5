from __future__ import annotations

import io
import json
import logging

import pytest

from cadastre.observe import SECRETS, configure_logging, get_logger, neutralise

CANARY = "canary-S3cr3t-value-7f1e"


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging("INFO")


def test_every_line_is_json_with_level_logger_and_extras(log_lines) -> None:
    get_logger("sync").info("applied", extra={"connection": "austin-mls", "records": 3})
    (line,) = log_lines()
    assert line["level"] == "info"
    assert line["logger"] == "cadastre.sync"
    assert line["msg"] == "applied"
    assert line["connection"] == "austin-mls"
    assert line["records"] == 3


def test_registered_secret_values_never_reach_the_sink(log_lines) -> None:
    SECRETS.add(CANARY)
    log = get_logger("gateway")
    log.info("calling with %s", CANARY)
    log.warning("vendor said", extra={"body": f"echo {CANARY}", "nested": {"x": [CANARY]}})
    try:
        raise RuntimeError(f"boom {CANARY}")
    except RuntimeError:
        log.exception("failed")
    text = json.dumps(log_lines())
    assert CANARY not in text
    assert text.count("[REDACTED]") >= 4


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("Basic dXNlcjpodW50ZXIy header sent", "dXNlcjpodW50ZXIy"),
        ("postgresql://app:hunter2pass@db/cadastre", "hunter2pass"),
        ("retrying with client_secret=abc123xyz&grant=x", "abc123xyz"),
        ('config {"password": "pa55word!"}', "pa55word!"),
    ],
)
def test_secret_shapes_in_free_text_are_redacted(log_lines, message: str, leak: str) -> None:
    get_logger("t").info(message)
    (line,) = log_lines()
    assert leak not in line["msg"]
    assert "[REDACTED]" in line["msg"]


def test_keys_that_name_secrets_are_redacted_whatever_the_value(log_lines) -> None:
    get_logger("t").info("creds", extra={"client_secret": "short", "api_key": 12345})
    (line,) = log_lines()
    assert line["client_secret"] == "[REDACTED]"
    assert line["api_key"] == "[REDACTED]"


def test_a_vendor_field_cannot_forge_a_second_log_line(log_lines) -> None:
    hostile = 'Main St\n{"level": "error", "msg": "forged"}\x1b[31m'
    get_logger("t").info("street %s", hostile)
    lines = log_lines()
    assert len(lines) == 1
    assert "\n" not in lines[0]["msg"]
    assert "\x1b" not in lines[0]["msg"]
    assert "\\n" in lines[0]["msg"]


def test_neutralise_keeps_plain_text() -> None:
    assert neutralise("Ünïcode and tabs ok") == "Ünïcode and tabs ok"
    assert neutralise("a\rb") == "a\\rb"


def test_configure_twice_keeps_one_handler() -> None:
    configure_logging("INFO")
    configure_logging("INFO")
    handlers = [h for h in logging.getLogger("cadastre").handlers if getattr(h, "_cadastre", False)]
    assert len(handlers) == 1
