"""A legacy RETS 1.x MLS: Digest login with a session cookie, DMQL2 searches answered in COMPACT
or COMPACT-DECODED, photos through GetObject, metadata, reply codes, and row caps."""

from cadastre.simulators.rets.app import RetsSimulator, RetsStats
from cadastre.simulators.rets.records import DATA_EPOCH, KEY_FIELD, TIMESTAMP_FIELD

__all__ = ["DATA_EPOCH", "KEY_FIELD", "TIMESTAMP_FIELD", "RetsSimulator", "RetsStats"]
