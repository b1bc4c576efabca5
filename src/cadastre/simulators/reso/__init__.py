"""A RESO Web API MLS: OAuth2 client credentials, OData ``Property`` with key-set paging, and
idempotent writes (RESO Add with ``Idempotency-Key``)."""

from cadastre.simulators.reso.app import DEFAULT_RATE_LIMIT, ResoSimulator
from cadastre.simulators.reso.records import DATA_EPOCH, DEFECTS
from cadastre.simulators.reso.writes import ResoStats

__all__ = ["DATA_EPOCH", "DEFAULT_RATE_LIMIT", "DEFECTS", "ResoSimulator", "ResoStats"]
