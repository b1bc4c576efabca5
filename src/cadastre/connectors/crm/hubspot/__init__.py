"""The HubSpot connector (``crm/hubspot``): contacts and deals in, by list paging and search on
last-modified; batched v3-signed webhooks; write-back by PATCH, upsert by email, archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from cadastre.connectors.crm.hubspot.connector import HubSpotConnector
from cadastre.connectors.crm.hubspot.settings import HubSpotSettings
from cadastre.connectors.sdk import AuthSpec, ClientCredentialsAuth, ConnectorSpec
from cadastre.gateway import VendorPolicy
from cadastre.gateway.ratelimit import RateRule

DEALS_MAPPING = "crm/hubspot/deals"

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector


class HubSpotConnectorSpec(ConnectorSpec):
    name = "crm/hubspot"
    system = "crm"
    # what its records are, for the drift check at configuration load (ownership/claims.py)
    claims: ClassVar[tuple[str, ...]] = ("Contact.*", "Deal.*")
    settings_model = HubSpotSettings
    family_mapping = Path(__file__).with_name("mapping.yaml")
    family_mappings: ClassVar[Mapping[str, Path]] = {
        DEALS_MAPPING: Path(__file__).with_name("deals.yaml")
    }
    receives_webhooks = True

    def base_url(self, settings: BaseModel) -> str:
        return cast("HubSpotSettings", settings).base_url

    def default_rate_limit(self, settings: BaseModel) -> RateRule | None:
        return RateRule(100, 10.0)  # HubSpot's burst limit per app and account (Free/Starter)

    def policy(self, settings: BaseModel) -> VendorPolicy:
        s = cast("HubSpotSettings", settings)
        return VendorPolicy(
            vendor="hubspot", connect=s.connect_timeout, read=s.read_timeout,
            max_attempts=s.max_attempts,
        )  # fmt: skip

    def auth(self, settings: BaseModel) -> AuthSpec:
        # Only the token URL is the connector's to say: the vault credential's scheme picks the
        # grant (oauth2_authorization_code: refresh with its refresh token).
        s = cast("HubSpotSettings", settings)
        return ClientCredentialsAuth(s.token_url or f"{s.base_url}/oauth/v1/token")

    def mapping_name(self, settings: BaseModel) -> str:
        return cast("HubSpotSettings", settings).mapping or self.name

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        s = cast("HubSpotSettings", settings)
        return {"deals": s.deals_mapping or DEALS_MAPPING} if "deals" in s.streams else {}

    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector:
        return HubSpotConnector(
            cast("HubSpotSettings", settings), gateway=gateway, mapper=mapper, clock=clock
        )


CONNECTOR = HubSpotConnectorSpec()

__all__ = ["CONNECTOR", "HubSpotConnector", "HubSpotConnectorSpec", "HubSpotSettings"]
