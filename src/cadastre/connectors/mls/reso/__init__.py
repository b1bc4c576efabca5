"""The RESO Web API connector (``mls/reso``): OData v4 MLS feeds, replicated by
(ModificationTimestamp, ListingKey)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from cadastre.connectors.mls.reso.connector import ResoConnector
from cadastre.connectors.mls.reso.settings import ResoSettings
from cadastre.connectors.sdk import AuthSpec, ClientCredentialsAuth, ConnectorSpec
from cadastre.gateway import VendorPolicy

MEDIA_MAPPING = "mls/reso/media"  # the family defaults of the Media resource

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector


class ResoConnectorSpec(ConnectorSpec):
    name = "mls/reso"
    system = "mls"
    settings_model = ResoSettings
    family_mapping = Path(__file__).with_name("mapping.yaml")
    family_mappings: ClassVar[Mapping[str, Path]] = {
        MEDIA_MAPPING: Path(__file__).with_name("media.yaml")
    }
    receives_webhooks = True  # RESO push replication (EntityEvents): connector.webhook_records

    def base_url(self, settings: BaseModel) -> str:
        return cast("ResoSettings", settings).base_url

    def policy(self, settings: BaseModel) -> VendorPolicy:
        s = cast("ResoSettings", settings)
        return VendorPolicy(
            vendor="reso", connect=s.connect_timeout, read=s.read_timeout,
            max_attempts=s.max_attempts,
        )  # fmt: skip

    def auth(self, settings: BaseModel) -> AuthSpec:
        s = cast("ResoSettings", settings)
        return ClientCredentialsAuth(s.token_url, s.scope) if s.token_url else None

    def mapping_name(self, settings: BaseModel) -> str:
        return cast("ResoSettings", settings).mapping or self.name

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        s = cast("ResoSettings", settings)
        if s.media == "off":
            return {}
        return {s.media_resource: s.media_mapping or MEDIA_MAPPING}

    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector:
        return ResoConnector(
            cast("ResoSettings", settings), gateway=gateway, mapper=mapper, clock=clock
        )


CONNECTOR = ResoConnectorSpec()

__all__ = ["CONNECTOR", "ResoConnector", "ResoConnectorSpec", "ResoSettings"]
