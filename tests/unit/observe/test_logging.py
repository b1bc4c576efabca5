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


@pytest.fixture
def plain_text():
    stream = io.StringIO()
    configure_logging("DEBUG", json=False, stream=stream)
    yield stream.getvalue
    configure_logging("INFO")


def test_plain_mode_cannot_be_forged_by_a_vendor_value(plain_text) -> None:
    get_logger("t").info("street %s", "x\nFAKE level=info msg=forged\x1b[31m")
    (line,) = plain_text().splitlines()
    assert line.startswith("INFO cadastre.t: street x\\nFAKE")
    assert "\x1b" not in line


def test_plain_mode_redacts_and_flattens_tracebacks_and_stacks(plain_text) -> None:
    SECRETS.add(CANARY)
    log = get_logger("t")
    try:
        raise RuntimeError(f"boom {CANARY}\nFAKE level=info msg=forged")
    except RuntimeError:
        log.exception("failed")
    log.info("where %s", "am I", stack_info=True)
    text = plain_text()
    assert CANARY not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert "RuntimeError: boom [REDACTED]\\nFAKE" in lines[0]
    assert "Stack (most recent call last)" in lines[1]


def test_json_mode_redacts_stack_info(log_lines) -> None:
    SECRETS.add(CANARY)
    get_logger("t").info("stack", stack_info=True, extra={"note": "n"})
    (line,) = log_lines()
    assert "Stack (most recent call last)" in line["stack"]


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("redis://:RedisPw123@h:6379/0", "RedisPw123"),
        ("postgresql://u:p@ss@h/db", "ss@h"),
        ("postgresql://u:p@ss@h/db", "p@ss"),
        ("connecting with pwd=Hunter2x now", "Hunter2x"),
        ("passphrase=CorrectHorse", "CorrectHorse"),
        ("Authorization: Token abc123def456", "abc123def456"),
        ('headers {"Authorization": "Token abc123def456"}', "abc123def456"),
        ("authorization=xyzzy42", "xyzzy42"),
    ],
)
def test_more_secret_shapes_are_redacted(log_lines, message: str, leak: str) -> None:
    get_logger("t").info(message)
    (line,) = log_lines()
    assert leak not in line["msg"]
    assert "[REDACTED]" in line["msg"]


def test_url_redaction_keeps_host_and_path(log_lines) -> None:
    get_logger("t").info("dsn postgresql://u:p@ss@db.internal/cad and https://host:8443/x@y")
    (line,) = log_lines()
    assert line["msg"] == (
        "dsn postgresql://u:[REDACTED]@db.internal/cad and https://host:8443/x@y"
    )


def test_extras_named_pwd_or_passphrase_are_redacted(log_lines) -> None:
    get_logger("t").info("c", extra={"pwd": "abc", "passphrase": "def", "db_pwd": "ghi"})
    (line,) = log_lines()
    assert (line["pwd"], line["passphrase"], line["db_pwd"]) == ("[REDACTED]",) * 3


def test_short_values_are_not_scrubbed_by_value_but_by_key_and_shape(log_lines) -> None:
    SECRETS.add("abc12")  # too short to scrub by value: it would eat ordinary words
    get_logger("t").info("id abc12 password=abc12", extra={"client_secret": "abc12"})
    (line,) = log_lines()
    assert line["msg"] == "id abc12 password=[REDACTED]"
    assert line["client_secret"] == "[REDACTED]"
