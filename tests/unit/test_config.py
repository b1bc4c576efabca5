from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cadastre.config import DuplicateKeyError, Settings, load_yaml


def test_embedded_default_is_sqlite_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CADASTRE_DATABASE_URL", "CADASTRE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.resolved_database_url() == "sqlite+aiosqlite:///var/cadastre.db"
    assert settings.bus == "memory"
    assert settings.redis_url is None


def test_the_database_password_never_shows_in_repr_or_dump(monkeypatch) -> None:
    monkeypatch.setenv("CADASTRE_DATABASE_URL", "postgresql+psycopg://app:canary-pw-9@db/cad")
    monkeypatch.setenv("CADASTRE_DATA_DIR", "/srv/cadastre")
    settings = Settings(_env_file=None)
    assert settings.data_dir == Path("/srv/cadastre")
    assert "canary-pw-9" in settings.resolved_database_url()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "canary-pw-9" not in text


def test_bad_values_are_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADASTRE_BUS", "kafka")
    with pytest.raises(ValueError, match="bus"):
        Settings(_env_file=None)


def test_bus_and_cache_urls_never_show_their_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADASTRE_REDIS_URL", "redis://:RedisPw123@h:6379/0")
    monkeypatch.setenv("CADASTRE_NATS_URL", "nats://bus:NatsPw456@h:4222")
    settings = Settings(_env_file=None)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:RedisPw123@h:6379/0"
    assert settings.nats_url.get_secret_value() == "nats://bus:NatsPw456@h:4222"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "RedisPw123" not in text
        assert "NatsPw456" not in text


def test_nats_url_has_a_local_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADASTRE_NATS_URL", raising=False)
    assert Settings(_env_file=None).nats_url.get_secret_value() == "nats://127.0.0.1:4222"


def test_log_level_is_checked_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADASTRE_LOG_LEVEL", "warning")
    assert Settings(_env_file=None).log_level == "WARNING"
    monkeypatch.setenv("CADASTRE_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match=r"log_level[\s\S]*DEBUG, INFO, WARNING"):
        Settings(_env_file=None)


def test_load_yaml_refuses_duplicate_keys_naming_key_and_lines() -> None:
    text = "rules:\n  - match: Listing.*\n    owner: mls\n    owner: crm\n"
    with pytest.raises(DuplicateKeyError) as caught:
        load_yaml(text, source="reg.yaml")
    assert isinstance(caught.value, yaml.MarkedYAMLError)
    assert caught.value.problem_mark is not None
    assert caught.value.problem_mark.line + 1 == 4
    assert "'owner'" in str(caught.value)
    assert "line 3" in str(caught.value)
    assert "reg.yaml" in str(caught.value)


def test_load_yaml_is_safe_and_keeps_merge_keys() -> None:
    text = "base: &b {a: 1, b: 2}\nchild:\n  <<: *b\n  b: 3\n"
    assert load_yaml(text, source="x") == {"base": {"a": 1, "b": 2}, "child": {"a": 1, "b": 3}}
    assert load_yaml("", source="x") is None
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']", source="x")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.0/8,::1", ("127.0.0.0/8", "::1")),
        (' ["127.0.0.0/8", "sim.local"] ', ("127.0.0.0/8", "sim.local")),
        ("", ()),
    ],
)
def test_the_operators_allow_list_reads_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", value)
    assert Settings(_env_file=None).gateway_allow_hosts == expected


def test_a_broken_json_allow_list_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", '["127.0.0.0/8"')
    with pytest.raises(ValidationError, match="neither a JSON list nor comma-separated"):
        Settings(_env_file=None)
