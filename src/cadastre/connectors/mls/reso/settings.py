"""A RESO Web API connection's settings (the connection's ``config``; never a secret)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from cadastre.connectors.sdk import ConnectorSettings


class ResoSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="the OData service root, e.g. https://api.mls.example/odata")
    token_url: str | None = Field(
        default=None, description="OAuth2 client-credentials token endpoint; unset: no auth"
    )
    scope: str | None = None
    resource: str = Field(default="Property", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    mapping: str | None = Field(
        default=None, description="mapping registry entry; unset: the family defaults (mls/reso)"
    )
    page_size: int = Field(default=1000, ge=1, le=10_000, description="$top of each request")
    overlap_seconds: float = Field(
        default=300.0,
        ge=0,
        description="an incremental read starts this far before its cursor, to catch records "
        "committed late upstream; records seen before come back as duplicates",
    )
    paging: Literal["next_link", "keyset"] = Field(
        default="next_link",
        description="follow @odata.nextLink, or build each next query from the last key "
        "(for servers whose nextLink is offset-based, which skips records changed mid-read)",
    )
    select: bool = Field(default=True, description="$select only the fields the mapping uses")
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("base_url", "token_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value
