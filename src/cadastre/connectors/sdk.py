"""What a connector author writes against: a ``ConnectorSpec`` that declares facts (name, system,
settings model, family mapping file, how it authenticates) and builds a ``SourceConnector`` from a
connection's settings and the gateway it is handed.

A connector never sees the store, the bus or the sync engine, and never picks an HTTP client: the
composition root builds the gateway (retries, auth, metering) and passes it in. That is what lets a
new integration touch no existing one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from cadastre.config import describe_validation_error
from cadastre.errors import ConfigurationError
from cadastre.gateway.settings import GatewaySettings
from cadastre.webhooks.settings import WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    from cadastre.gateway import Gateway, VendorPolicy
    from cadastre.gateway.ratelimit import RateRule
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector


@dataclass(frozen=True)
class ClientCredentialsAuth:
    """OAuth2 client credentials (RFC 6749 §4.4): the connection's credential holds
    ``client_id`` and ``client_secret``."""

    token_url: str
    scope: str | None = None


AuthSpec = ClientCredentialsAuth | None


@dataclass(frozen=True)
class MassUpdate:
    """An incremental read that holds most of the vendor's records at once (the vendor touched
    every record's timestamp): replicated at a throttled pace, and reported."""

    stream: str
    changed: int  # records the read holds, as the vendor counted them
    total: int | None  # records the vendor holds in all, when it said
    page_seconds: float  # at most one request per this many seconds while it lasts


class ConnectorSettings(BaseModel):
    """What every connection's settings carry besides its connector's own: ``gateway`` (rate
    limits, breaker, bulkhead, allowed private hosts; see ``cadastre.gateway.settings``),
    ``ingestion`` and ``webhook`` (``cadastre.webhooks.settings``)."""

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    ingestion: Literal["poll", "webhook"] = Field(
        default="poll",
        description="poll: synced at the MLS's refresh cadence; webhook: the vendor pushes "
        "changes, and a slow reconciliation poll (CADASTRE_WEBHOOK_POLL_SECONDS) catches the "
        "webhooks that never arrived",
    )
    # How the hub verifies the vendor's webhooks (POST /webhooks/{tenant}/{connection}); the
    # receiver reads it, the connector never does.
    webhook: WebhookSettings | None = None
    # Write-back (docs/writeback.md): where a tenant has several connections of one system, the
    # one that takes the platform's creates.
    writeback_default: bool = False


class ConnectorSpec(ABC):
    name: ClassVar[str]  # "<family>/<vendor>", as connections name it: "mls/reso"
    system: ClassVar[str]  # default owning-system name of its records: "mls"
    settings_model: ClassVar[type[BaseModel]]
    family_mapping: ClassVar[Path]  # the package's mapping.yaml: the family's defaults
    # Further family files the package ships, by registry name: {"mls/reso/media": media.yaml}.
    family_mappings: ClassVar[Mapping[str, Path]] = {}
    # Its connector reads pushed notifications (``ReceivesWebhooks``): `ingestion: webhook` is
    # refused for one that cannot.
    receives_webhooks: ClassVar[bool] = False
    # What the vendor's system owns, as `Entity.*` or `Entity.Field` patterns (Buildium:
    # Lease.*, Unit.*, Resident.*): checked against the registry and the other connections'
    # claims at configuration load (cadastre.ownership.claims). A connection adds its own with
    # the config's `owns` list.
    claims: ClassVar[tuple[str, ...]] = ()
    # The write-back mode of its connections until someone sets one (`cadastre writeback mode`):
    # "live", or "shadow" where a wrong write is costly (accounting), or "off".
    default_writeback_mode: ClassVar[str] = "live"

    def settings(self, connection: str, config: Mapping[str, Any]) -> BaseModel:
        # `owns` is the connection's ownership claim, the hub's to check, not the connector's
        config = {k: v for k, v in config.items() if k != "owns"}
        try:
            settings = self.settings_model.model_validate(dict(config))
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            raise ConfigurationError(
                f"connection {connection!r}: invalid {self.name} settings: {problems}"
            ) from None
        if getattr(settings, "ingestion", "poll") == "webhook":
            if not self.receives_webhooks:
                raise ConfigurationError(
                    f"connection {connection!r}: ingestion is webhook, but {self.name} cannot "
                    "read webhooks; use ingestion: poll"
                )
            if getattr(settings, "webhook", None) is None:
                # Without it no webhook gets in, and the connection would quietly be synced
                # only by the slow poll.
                raise ConfigurationError(
                    f"connection {connection!r}: ingestion is webhook, but it has no webhook "
                    "block saying how to verify them (webhook: {scheme, credential})"
                )
        return settings

    def ingestion(self, settings: BaseModel) -> str:
        """The connection's ``ingestion``, ``poll`` or ``webhook``: the scheduler's cadence
        follows it."""
        found = getattr(settings, "ingestion", "poll")
        return found if found in ("poll", "webhook") else "poll"

    @abstractmethod
    def base_url(self, settings: BaseModel) -> str: ...

    def gateway_settings(self, settings: BaseModel) -> GatewaySettings:
        found = getattr(settings, "gateway", None)
        return found if isinstance(found, GatewaySettings) else GatewaySettings()

    def default_rate_limit(self, settings: BaseModel) -> RateRule | None:
        """The vendor's documented limit, used when the connection declares none."""
        return None

    @abstractmethod
    def policy(self, settings: BaseModel) -> VendorPolicy: ...

    @abstractmethod
    def auth(self, settings: BaseModel) -> AuthSpec: ...

    @abstractmethod
    def mapping_name(self, settings: BaseModel) -> str:
        """The mapping registry entry for this connection (a family name for the defaults)."""

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        """Mapping registry entries of the streams whose records arrive inside the main stream's
        pages (stream -> mapping name), e.g. Media read with each Property page."""
        return {}

    @abstractmethod
    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector: ...
