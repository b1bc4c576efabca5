"""The Buildium connector (``pms/buildium``): rental tenants, units and leases from Buildium's
Open API v1, read incrementally by last-updated time, pushed by webhooks, and written back with
Buildium's whole-object PUT (read, merge, send every field)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from cadastre.connectors.pms.buildium.connector import BuildiumConnector
from cadastre.connectors.pms.buildium.settings import BuildiumSettings
from cadastre.connectors.sdk import AuthSpec, ConnectorSpec
from cadastre.gateway import VendorPolicy
from cadastre.gateway.ratelimit import RateRule

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector

UNITS_MAPPING = "pms/buildium/units"
LEASES_MAPPING = "pms/buildium/leases"
# Buildium: "10 concurrent requests per second"; the gateway keeps its usual headroom below it.
RATE = RateRule(requests=10, per=1.0)


class BuildiumConnectorSpec(ConnectorSpec):
    name = "pms/buildium"
    system = "pms"
    # what its records are, for the drift check at configuration load (ownership/claims.py)
    claims: ClassVar[tuple[str, ...]] = ("Lease.*", "Unit.*", "Resident.*")
    settings_model = BuildiumSettings
    family_mapping = Path(__file__).with_name("mapping.yaml")
    family_mappings: ClassVar[Mapping[str, Path]] = {
        UNITS_MAPPING: Path(__file__).with_name("units.yaml"),
        LEASES_MAPPING: Path(__file__).with_name("leases.yaml"),
    }
    receives_webhooks = True  # thin LeaseTenant/RentalUnit/Lease events: webhook_records

    def base_url(self, settings: BaseModel) -> str:
        return cast("BuildiumSettings", settings).base_url

    def policy(self, settings: BaseModel) -> VendorPolicy:
        s = cast("BuildiumSettings", settings)
        return VendorPolicy(
            vendor="buildium", connect=s.connect_timeout, read=s.read_timeout,
            max_attempts=s.max_attempts,
        )  # fmt: skip

    def default_rate_limit(self, settings: BaseModel) -> RateRule | None:
        return RATE

    def auth(self, settings: BaseModel) -> AuthSpec:
        # The API key pair is a vault `api_key` credential: the secret as `api_key` (sent as
        # x-buildium-client-secret), the client id in its meta (`id`, sent as `id_header`).
        return None

    def mapping_name(self, settings: BaseModel) -> str:
        return cast("BuildiumSettings", settings).mapping or self.name

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        s = cast("BuildiumSettings", settings)
        return {"units": s.units_mapping or UNITS_MAPPING,
                "leases": s.leases_mapping or LEASES_MAPPING}  # fmt: skip

    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector:
        return BuildiumConnector(cast("BuildiumSettings", settings), gateway=gateway, clock=clock)


CONNECTOR = BuildiumConnectorSpec()

__all__ = ["CONNECTOR", "BuildiumConnector", "BuildiumConnectorSpec", "BuildiumSettings"]
