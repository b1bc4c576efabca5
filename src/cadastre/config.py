"""Settings, read from ``CADASTRE_*`` environment variables (and ``.env``).

The embedded default needs nothing: SQLite under ``./var/``, the in-process bus, in-memory limits.
The distributed mode is the same code with other URLs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CADASTRE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="where the embedded default keeps files"
    )
    # A SecretStr because PostgreSQL URLs may carry a password; repr() and logs show '**********'.
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means SQLite at <data_dir>/cadastre.db",
    )
    bus: Literal["memory", "nats"] = "memory"
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str | None = None
    ownership_file: Path | None = Field(
        default=None, description="system-of-record YAML; unset means the packaged default"
    )
    credentials_file: Path | None = Field(
        default=None, description="YAML of name -> secret for the file CredentialProvider"
    )
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cadastre.db').as_posix()}"
