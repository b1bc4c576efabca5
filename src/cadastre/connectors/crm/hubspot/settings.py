"""A HubSpot connection's settings (the connection's ``config``; never a secret)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from cadastre.connectors.sdk import ConnectorSettings

Stream = Literal["contacts", "deals"]


class HubSpotSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="https://api.hubapi.com", description="HubSpot's API root")
    token_url: str | None = Field(
        default=None, description="OAuth2 token endpoint; unset: {base_url}/oauth/v1/token"
    )
    streams: tuple[Stream, ...] = Field(default=("contacts", "deals"), min_length=1)
    mapping: str | None = Field(
        default=None, description="contacts mapping registry entry; unset: crm/hubspot"
    )
    deals_mapping: str | None = Field(
        default=None, description="deals mapping registry entry; unset: crm/hubspot/deals"
    )
    page_size: int = Field(default=100, ge=1, le=100, description="`limit` of a list page")
    search_page_size: int = Field(default=200, ge=1, le=200, description="`limit` of a search")
    overlap_seconds: float = Field(
        default=120.0, ge=0,
        description="an incremental read starts this far before its cursor: HubSpot's search "
        "index trails its writes by seconds, so a record changed just before a read can appear "
        "in the search only after it; records read again come back as duplicates",
    )  # fmt: skip
    search_interval: float = Field(
        default=0.3, ge=0,
        description="seconds between two search requests of this connector (HubSpot allows 4 "
        "searches a second per app and account, beside the 100 per 10 s of every call)",
    )  # fmt: skip
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("base_url", "token_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value
