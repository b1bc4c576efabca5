from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.config import Settings


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
