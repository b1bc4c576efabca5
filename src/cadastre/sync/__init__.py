"""Pure sync logic over the ports: ``SyncEngine.apply`` / ``apply_batch`` and the decisions
behind them."""

from cadastre.sync.conflicts import Judgement, Verdict, admit, after_delete, judge
from cadastre.sync.engine import (
    BACKWARDS,
    REFUSED_EVENT,
    BatchItem,
    CursorAdvance,
    QuarantineDraft,
    SyncEngine,
    forbidden_by_ownership,
)
from cadastre.sync.origin import (
    DELETED_FIELD,
    Stamp,
    compare,
    event_source,
    new_record_id,
    stamp_of,
)
from cadastre.sync.plan import Plan, Target, Validator, plan_delete, plan_upsert
from cadastre.sync.replay import QuarantineReplay, ReplaySummary
from cadastre.sync.runner import SyncReport, SyncRunner, SyncTally

__all__ = [
    "BACKWARDS",
    "DELETED_FIELD",
    "REFUSED_EVENT",
    "BatchItem",
    "CursorAdvance",
    "Judgement",
    "Plan",
    "QuarantineDraft",
    "QuarantineReplay",
    "ReplaySummary",
    "Stamp",
    "SyncEngine",
    "SyncReport",
    "SyncRunner",
    "SyncTally",
    "Target",
    "Validator",
    "Verdict",
    "admit",
    "after_delete",
    "compare",
    "event_source",
    "forbidden_by_ownership",
    "judge",
    "new_record_id",
    "plan_delete",
    "plan_upsert",
    "stamp_of",
]
