"""A RETS connection's settings (the connection's ``config``; never a secret: the username and
password are a vault credential of scheme ``digest``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator

from cadastre.connectors.sdk import ConnectorSettings


class RetsSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    login_url: str = Field(description="the RETS Login URL, e.g. https://rets.mls.example/login")
    resource: str = Field(default="Property", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    search_class: str = Field(default="RES", pattern=r"^[A-Za-z0-9_]+$", description="Class=")
    mapping: str | None = Field(
        default=None, description="mapping registry entry; unset: the family defaults (mls/rets)"
    )
    timezone: str = Field(
        default="America/Chicago",
        description="the server's zone: RETS DateTime values are its local time, without offset",
    )
    format: Literal["COMPACT-DECODED", "COMPACT"] = Field(
        default="COMPACT-DECODED", description="lookup values as long values, or as codes"
    )
    page_size: int = Field(
        default=2500, ge=1, le=100_000,
        description="Limit= of each search; a window with more records is split in halves",
    )  # fmt: skip
    history_start: datetime = Field(
        default=datetime(1990, 1, 1),  # noqa: DTZ001 - RETS local time, zone in `timezone`
        description="a full read starts here (server local time)",
    )
    overlap_seconds: float = Field(
        default=0.0, ge=0,
        description="an incremental read starts this far before its cursor (records committed "
        "late upstream); records seen before come back as duplicates",
    )  # fmt: skip
    window_fractions: bool = Field(
        default=True,
        description="end each window at the last millisecond of its second (hh:mm:05.999), so "
        "records a server stamps with fractions of a second fall in a window; false for "
        "servers that refuse fractions in DMQL (they answer 20206) and keep whole seconds",
    )
    media: bool = Field(
        default=False,
        description="with each page, GetObject (Location=1) the photos of listings whose "
        "photo timestamp moved since the read began: Media records in the same page",
    )
    media_mapping: str | None = Field(
        default=None, description="mapping registry entry for Media; unset: mls/rets/media"
    )
    photo_timestamp: str = Field(
        default="PhotoTimestamp", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the listing field that moves when its photos change",
    )  # fmt: skip
    media_batch: int = Field(default=20, ge=1, le=200, description="listings per GetObject")
    rets_version: str = Field(default="RETS/1.7.2", pattern=r"^RETS/\d+\.\d+(\.\d+)?$")
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("login_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @field_validator("history_start")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("is the server's local time, without an offset")
        return value
