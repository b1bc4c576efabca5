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
    overlap_seconds: float | None = Field(
        default=None,
        ge=0,
        description="an incremental read starts this far before its cursor, to catch records "
        "committed late upstream; records seen before come back as duplicates. Unset: the "
        "mapping's refresh.overlap_minutes, else 300 s",
    )
    paging: Literal["next_link", "keyset"] = Field(
        default="next_link",
        description="follow @odata.nextLink, or build each next query from the last key "
        "(for servers whose nextLink is offset-based, which skips records changed mid-read)",
    )
    select: bool = Field(default=True, description="$select only the fields the mapping uses")
    media: Literal["off", "expand", "resource"] = Field(
        default="off",
        description="listing photos: off; $expand=Media inside each Property page; or the Media "
        "resource, asked for the listings of each page whose PhotosChangeTimestamp moved",
    )
    media_resource: str = Field(default="Media", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    media_mapping: str | None = Field(
        default=None, description="mapping registry entry for Media; unset: mls/reso/media"
    )
    expand_page_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="$top of a request with $expand (MLS Grid: 1,000)",
    )
    media_batch: int = Field(
        default=50, ge=1, le=500, description="listing keys per Media request (an `in` filter)"
    )
    keys_page_size: int | None = Field(
        default=None, ge=1, le=100_000,
        description="$top of a keys-only read (reconciliation): the biggest page the MLS allows; "
        "unset: page_size",
    )  # fmt: skip
    page_attempts: int = Field(
        default=3, ge=1, le=10,
        description="reads of a page that cannot be read (not JSON, not an OData collection) "
        "before it is handed on as unreadable, to be quarantined",
    )  # fmt: skip
    empty_pages: int = Field(
        default=10, ge=1, le=1000,
        description="empty pages in a row that still carry an @odata.nextLink (a vendor that "
        "filters after paging) followed before the read ends as an unreadable page",
    )  # fmt: skip
    mass_update_records: int = Field(
        default=1000, ge=1,
        description="an incremental read of at least this many records, and of at least "
        "mass_update_share of the MLS's records, is a mass update (a timestamp bump)",
    )  # fmt: skip
    mass_update_share: float = Field(default=0.5, gt=0, le=1)
    mass_update_page_seconds: float = Field(
        default=2.0, ge=0,
        description="during a mass update, at most one page request per this many seconds, so "
        "the bump takes a bounded share of the MLS's rate budget",
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
