"""A QuickBooks Online connection's settings (the connection's ``config``; never a secret)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from cadastre.connectors.accounting.quickbooks.streams import STREAMS
from cadastre.connectors.sdk import ConnectorSettings

INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"  # noqa: S105


class QuickBooksSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="the API host: https://quickbooks.api.intuit.com (production) or "
        "https://sandbox-quickbooks.api.intuit.com"
    )
    realm_id: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$", description="the company id")
    token_url: str = Field(default=INTUIT_TOKEN_URL, description="Intuit's token endpoint")
    streams: tuple[str, ...] = Field(
        default=tuple(STREAMS), description="Account, Payment, JournalEntryLine (any of them)"
    )
    minor_version: int = Field(default=75, ge=1, description="?minorversion= on every call")
    page_size: int = Field(default=1000, ge=1, le=1000, description="MAXRESULTS of a full read")
    cdc_max: int = Field(
        default=1000, ge=1, le=1000,
        description="objects a CDC answer holds at most; an answer this full may have left "
        "changes out, so the next request starts at its newest change instead of its time",
    )  # fmt: skip
    cdc_days: float = Field(
        default=30.0, gt=0, le=30,
        description="how far back CDC reaches; an older cursor starts a full read",
    )  # fmt: skip
    cdc_margin_seconds: float = Field(
        default=3600.0, ge=0, description="a cursor this close to the CDC limit reads in full"
    )
    stale_retries: int = Field(
        default=3, ge=1, le=10,
        description="re-read, re-merge and resend rounds after a stale SyncToken (5010)",
    )  # fmt: skip
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("base_url", "token_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("streams")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(STREAMS))
        if unknown or not value:
            raise ValueError(f"streams are among {', '.join(STREAMS)}; not {unknown}")
        return tuple(dict.fromkeys(value))
