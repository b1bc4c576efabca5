"""``/v1/conflicts``: the review queue of concurrent edits of shared fields, and their resolution;
``/v1/audit``: one record's audit trail. Tenant-scoped like every ``/v1`` route: another
tenant's conflict answers 404, as an unknown one does.

Resolving needs a write key; the decision is applied through the engine (origin core, caused by
the conflict) and written to the audit log as ``api:<key id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.api.subscriptions import WRITE_PROBLEMS, Writer
from cadastre.errors import AlreadyExists, ContractError, NotFound
from cadastre.ports import AuditEntry, Conflict, ConflictResolution, ConflictState

router = APIRouter(prefix="/v1", tags=["conflicts"])
MAX_PAGE = 500
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No such conflict in the key's tenant")}
RESOLVE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: _problem("The conflict is resolved already"),
    422: _problem("The value breaks the contract, or the record is gone"),
}


class ConflictOut(BaseModel):
    id: str
    entity: str
    record_id: str
    field: str
    state: Literal["open", "resolved"]
    rule: str
    current: dict[str, Any] = Field(description="value and stamp of the stored value")
    incoming: dict[str, Any] = Field(description="value and stamp of the held-back edit")
    vector: dict[str, Any] = Field(description="the field's version vector when it was held")
    created_at: datetime
    resolution: Literal["keep_current", "take_incoming", "value"] | None = None
    resolved_value: Any = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


def _out(c: Conflict) -> ConflictOut:
    return ConflictOut(
        id=c.id, entity=c.entity, record_id=c.record_id, field=c.field, state=c.state.value,
        rule=c.rule, current=dict(c.current), incoming=dict(c.incoming), vector=dict(c.vector),
        created_at=c.created_at, resolution=c.resolution.value if c.resolution else None,
        resolved_value=c.resolved_value, resolved_by=c.resolved_by, resolved_at=c.resolved_at,
    )  # fmt: skip


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["keep_current", "take_incoming", "value"]
    value: Any = Field(default=None, description="the value to set, with resolution 'value'")

    @model_validator(mode="after")
    def _value_only_with_value(self) -> ResolveIn:
        if self.resolution != "value" and "value" in self.model_fields_set:
            raise ValueError("'value' is given only with resolution 'value'")
        if self.resolution == "value" and "value" not in self.model_fields_set:
            raise ValueError("resolution 'value' needs a 'value'")
        return self


class ResolvedOut(BaseModel):
    conflict: ConflictOut
    version: int = Field(description="the record's version after the resolution")
    event_id: str | None


@router.get("/conflicts", response_model=list[ConflictOut], responses=PROBLEMS,
            summary="The review queue, oldest first")  # fmt: skip
async def list_conflicts(
    request: Request,
    key: Reader,
    entity: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[Literal["open", "resolved"] | None, Query()] = "open",
    record_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[ConflictOut]:
    hub = hub_of(request)
    async with hub.store.unit_of_work(key.tenant, read_only=True) as uow:
        found = await uow.conflicts.find(
            entity=entity, state=ConflictState(state) if state else None, record_id=record_id,
            limit=limit,
        )  # fmt: skip
    return [_out(c) for c in found]


@router.get("/conflicts/{conflict_id}", response_model=ConflictOut,
            responses={**PROBLEMS, **NOT_FOUND}, summary="One conflict")  # fmt: skip
async def get_conflict(request: Request, key: Reader, conflict_id: str) -> ConflictOut:
    async with hub_of(request).store.unit_of_work(key.tenant, read_only=True) as uow:
        found = await uow.conflicts.get(conflict_id)
    if found is None:
        raise Problem(404, f"conflict {conflict_id!r} does not exist")
    return _out(found)


@router.post("/conflicts/{conflict_id}/resolve", response_model=ResolvedOut,
             responses={**WRITE_PROBLEMS, **RESOLVE_PROBLEMS},
             summary="Resolve a conflict (the value reaches every system holding the record)",
             )  # fmt: skip
async def resolve_conflict(
    request: Request, key: Writer, conflict_id: str, body: ResolveIn
) -> ResolvedOut:
    hub = hub_of(request)
    try:
        done = await hub.engine.resolve_conflict(
            key.tenant, conflict_id, ConflictResolution(body.resolution), value=body.value,
            actor=f"api:{key.key_id}",
        )  # fmt: skip
    except NotFound:
        raise Problem(404, f"conflict {conflict_id!r} does not exist") from None
    except AlreadyExists as exc:
        raise Problem(409, str(exc)) from None
    except ContractError as exc:
        raise Problem(422, str(exc)) from None
    return ResolvedOut(
        conflict=_out(done.conflict), version=done.result.version, event_id=done.result.event_id
    )


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    entity: str | None
    entity_id: str | None
    detail: dict[str, Any]
    hash: str


def _entry(e: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        seq=e.seq, at=e.at, actor=e.actor, action=e.action, entity=e.entity,
        entity_id=e.entity_id, detail=dict(e.detail), hash=e.hash,
    )  # fmt: skip


@router.get("/audit", response_model=list[AuditEntryOut], responses=PROBLEMS,
            summary="One record's audit trail, oldest first")  # fmt: skip
async def audit_of(
    request: Request,
    key: Reader,
    entity: Annotated[str, Query(min_length=1, max_length=64)],
    id: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[int, Query(ge=0, description="the next page: the last seq seen")] = 0,
) -> list[AuditEntryOut]:
    out: list[AuditEntryOut] = []
    async with hub_of(request).store.unit_of_work(key.tenant, read_only=True) as uow:
        async for e in uow.audit.entries_for(entity, id, after_seq=after):
            out.append(_entry(e))
            if len(out) >= limit:
                break
    return out
