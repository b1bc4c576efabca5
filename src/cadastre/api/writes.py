"""``GET /v1/writes/{id}``: where a platform write stands, per target system
(``docs/writeback.md``). Tenant-scoped: another tenant's write id is 404."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.errors import NotFound

router = APIRouter(prefix="/v1", tags=["writes"])


@router.get(
    "/writes/{write_id}",
    responses={**PROBLEMS, 404: _problem("No such write in the key's tenant")},
    summary="Where a write stands, per target system",
)
async def get_write(request: Request, key: Reader, write_id: str) -> Response:
    try:
        write, targets = await hub_of(request).writeback.get(key.tenant, write_id)
    except NotFound:
        raise Problem(404, "no such write") from None
    body: dict[str, Any] = {
        "write_id": write.id, "entity": write.entity, "id": write.canonical_id,
        "operation": write.operation.value, "patch": write.patch,
        "created_at": write.created_at.isoformat(), "causation_id": write.causation_id,
        "targets": [
            {
                "system": t.system, "connection": t.connection, "state": t.state.value,
                "attempts": t.attempts, "external_id": t.external_id, "error": t.error or None,
                "fields": sorted(t.fields),
                "updated_at": t.updated_at.isoformat() if t.updated_at else None,
            }
            for t in targets
        ],
    }  # fmt: skip
    return Response(orjson.dumps(body), media_type="application/json")
