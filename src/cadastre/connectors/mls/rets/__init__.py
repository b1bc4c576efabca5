"""The RETS 1.x connector (``mls/rets``): legacy MLS servers, Digest login with a session cookie,
DMQL2 searches read as COMPACT-DECODED, replicated by modification timestamp in time windows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from cadastre.connectors.mls.rets.connector import MEDIA_STREAM, Photo, RetsConnector
from cadastre.connectors.mls.rets.settings import RetsSettings
from cadastre.connectors.sdk import AuthSpec, ConnectorSpec
from cadastre.gateway import VendorPolicy

MEDIA_MAPPING = "mls/rets/media"  # the family defaults of photos as Media records

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector


class RetsConnectorSpec(ConnectorSpec):
    name = "mls/rets"
    system = "mls"
    settings_model = RetsSettings
    family_mapping = Path(__file__).with_name("mapping.yaml")
    family_mappings: ClassVar[Mapping[str, Path]] = {
        MEDIA_MAPPING: Path(__file__).with_name("media.yaml")
    }

    def base_url(self, settings: BaseModel) -> str:
        return cast("RetsSettings", settings).login_url

    def policy(self, settings: BaseModel) -> VendorPolicy:
        s = cast("RetsSettings", settings)
        return VendorPolicy(
            vendor="rets", connect=s.connect_timeout, read=s.read_timeout,
            max_attempts=s.max_attempts,
        )  # fmt: skip

    def auth(self, settings: BaseModel) -> AuthSpec:
        # The credential's own scheme (``digest``, or ``basic``) is the whole story: no token
        # endpoint to declare.
        return None

    def mapping_name(self, settings: BaseModel) -> str:
        return cast("RetsSettings", settings).mapping or self.name

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        s = cast("RetsSettings", settings)
        return {MEDIA_STREAM: s.media_mapping or MEDIA_MAPPING} if s.media else {}

    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector:
        return RetsConnector(
            cast("RetsSettings", settings), gateway=gateway, mapper=mapper, clock=clock
        )


CONNECTOR = RetsConnectorSpec()

__all__ = ["CONNECTOR", "Photo", "RetsConnector", "RetsConnectorSpec", "RetsSettings"]
