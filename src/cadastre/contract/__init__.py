"""The canonical contract v1: models (RESO names for listings), changes, events, schema tools."""

from cadastre.contract.base import CanonicalModel, wire_name
from cadastre.contract.changes import (
    ApplyResult,
    Change,
    FieldRefusal,
    Operation,
    Origin,
    RefusalReason,
)
from cadastre.contract.events import CATALOGUE, EventEnvelope, EventType, entity_event_type

__all__ = [
    "CATALOGUE",
    "ApplyResult",
    "CanonicalModel",
    "Change",
    "EventEnvelope",
    "EventType",
    "FieldRefusal",
    "Operation",
    "Origin",
    "RefusalReason",
    "entity_event_type",
    "wire_name",
]
