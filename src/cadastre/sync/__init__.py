"""Pure sync logic over the ports: ``SyncEngine.apply`` / ``apply_batch`` and the decisions
behind them."""

from cadastre.sync.conflicts import Judgement, Verdict, admit, after_delete, judge
from cadastre.sync.engine import (
    REFUSED_EVENT,
    BatchItem,
    CursorAdvance,
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

__all__ = [
    "DELETED_FIELD",
    "REFUSED_EVENT",
    "BatchItem",
    "CursorAdvance",
    "Judgement",
    "Plan",
    "Stamp",
    "SyncEngine",
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
