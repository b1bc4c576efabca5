"""A Buildium connection's settings (the connection's ``config``; never a secret: the API key
pair lives in the vault as an ``api_key`` credential, the client id in its meta)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from cadastre.connectors.sdk import ConnectorSettings


class BuildiumSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="the API root (Buildium's production or sandbox host); paths start with /v1"
    )
    mapping: str | None = Field(
        default=None, description="mapping registry entry of tenants; unset: pms/buildium"
    )
    units_mapping: str | None = Field(default=None, description="unset: pms/buildium/units")
    leases_mapping: str | None = Field(default=None, description="unset: pms/buildium/leases")
    page_size: int = Field(
        default=1000, ge=1, le=1000, description="`limit` of each list request (the vendor's max)"
    )
    overlap_seconds: float = Field(
        default=120.0, ge=0,
        description="an incremental read asks from this far before the last read's end "
        "(`lastupdatedfrom` has whole seconds and clocks differ); what it reads again comes "
        "back as duplicates",
    )  # fmt: skip
    page_attempts: int = Field(
        default=3, ge=1, le=10,
        description="reads of a page that is not a JSON list before it is quarantined whole",
    )  # fmt: skip
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
