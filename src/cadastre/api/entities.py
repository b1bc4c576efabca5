"""``/v1/<entities>``: read every canonical entity (listings have their own module) and write the
platform's changes, routed to each field's owner (``docs/writeback.md``).

Reads: ``GET /v1/contacts`` (keyset pages by id; ``?Field=value`` filters on text fields,
exact) and ``GET /v1/contacts/{id}``, tenant-scoped by the API key (another tenant's id is 404).
Writes (a write key): ``PATCH /v1/contacts/{id}`` with a JSON merge patch (RFC 7396: null removes
a field), ``POST /v1/contacts`` (create), ``DELETE /v1/contacts/{id}``. Each answers 202 with
``{"write_id", "targets": [...]}`` and ``Location: /v1/writes/{id}``; a patch naming a field the
platform may not write, an unknown field or an invalid value is refused whole, 422, every field
named. Handlers are plain async functions (the ``Idempotency-Key`` middleware wraps them all).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from cadastre.api.auth import Reader, hub_of
from cadastre.api.cursor import InvalidCursor, decode_cursor, encode_cursor, query_fingerprint
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import INVALID_CURSOR, INVALID_PARAMETERS, Problem
from cadastre.api.subscriptions import Writer
from cadastre.errors import NotFound, OwnershipViolation
from cadastre.ports import FieldFilter, StoredRecord, WriteOperation
from cadastre.sync.writeback import PlannedWrite, WriteRejected

MAX_PAGE = 500
MAX_BODY = 256 * 1024
FIELD_REFUSED = "urn:cadastre:problem:field-refused"
INVALID_WRITE = "urn:cadastre:problem:invalid-write"
PATCH_TYPES = ("application/merge-patch+json", "application/json")

# path segment -> canonical entity (Listing has /v1/listings; Deal joins when the CRM adds it)
PATHS = {
    "contacts": "Contact", "deals": "Deal", "properties": "Property", "units": "Unit",
    "leases": "Lease", "residents": "Resident", "ledger-accounts": "LedgerAccount",
    "ledger-entries": "LedgerEntry", "payments": "Payment",
}  # fmt: skip

router = APIRouter(prefix="/v1", tags=["entities"])

READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS, 404: _problem("No such record in the key's tenant"),
}  # fmt: skip
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **READ_PROBLEMS,
    403: _problem("The API key may only read"),
    415: _problem("The body is not JSON (application/merge-patch+json)"),
    422: _problem("Fields the platform may not write, unknown fields or invalid values: "
                  "`fields` names each one"),
}  # fmt: skip


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _record(record: StoredRecord) -> dict[str, Any]:
    return {"id": record.id, "version": record.version, **record.data}


def _known(entity: str, request: Request) -> None:
    if entity not in hub_of(request).registry.entities():
        raise Problem(404, "not found")


async def list_records(
    request: Request, key: Reader, entity: str, limit: int, cursor: str | None
) -> Response:
    _known(entity, request)
    fields = hub_of(request).registry.fields(entity)
    filters: list[FieldFilter] = []
    unknown = []
    for name, value in request.query_params.items():
        if name in ("limit", "cursor"):
            continue
        if name not in fields:
            unknown.append(name)
            continue
        filters.append(FieldFilter(name, "eq", value))
    if unknown:
        errors = [{"name": n, "in": "query", "detail": f"{entity} has no field {n}"}
                  for n in unknown]  # fmt: skip
        raise Problem(422, f"unknown filters: {', '.join(unknown)}", type=INVALID_PARAMETERS,
                      title="Invalid request parameters", extra={"errors": errors})  # fmt: skip
    fingerprint = query_fingerprint(f"{key.tenant}\n{entity}", filters)
    try:
        after = None if cursor is None else decode_cursor(cursor, fingerprint)
    except InvalidCursor as exc:
        raise Problem(400, str(exc), type=INVALID_CURSOR, title="Invalid cursor") from None
    async with hub_of(request).store.unit_of_work(key.tenant, read_only=True) as uow:
        found = await uow.records.query(entity, filters, after_id=after, limit=limit + 1)
    page = found[:limit]
    following = encode_cursor(page[-1].id, fingerprint) if len(found) > limit else None
    return _json({"data": [_record(r) for r in page], "next_cursor": following})


async def get_record(request: Request, key: Reader, entity: str, record_id: str) -> Response:
    _known(entity, request)
    async with hub_of(request).store.unit_of_work(key.tenant, read_only=True) as uow:
        record = await uow.records.get(entity, record_id)
    if record is None or record.deleted:
        raise Problem(404, f"no such {entity}")  # another tenant's id reads the same
    return _json(_record(record), headers={"ETag": f'"{record.version}-{record.content_hash}"'})


async def _patch_body(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in PATCH_TYPES:
        raise Problem(415, "send the patch as application/merge-patch+json (or application/json)")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Problem(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise Problem(422, "a merge patch is a JSON object of field -> value",
                      type=INVALID_WRITE, title="Invalid write", extra={"fields": []})  # fmt: skip
    return parsed


async def _submit(
    request: Request, key: Any, entity: str, record_id: str | None, patch: dict[str, Any],
    operation: WriteOperation,
) -> Response:  # fmt: skip
    _known(entity, request)
    try:
        planned = await hub_of(request).writeback.submit(
            key.tenant, entity, record_id, patch, operation=operation, actor=key.key_id
        )
    except NotFound:
        raise Problem(404, f"no such {entity}") from None
    except OwnershipViolation as exc:
        fields = [p.as_json() for p in exc.result] if isinstance(exc.result, list) else []
        raise Problem(422, str(exc), type=FIELD_REFUSED, title="Fields not writable",
                      extra={"fields": fields}) from None  # fmt: skip
    except WriteRejected as exc:
        raise Problem(422, str(exc), type=INVALID_WRITE, title="Invalid write",
                      extra={"fields": [p.as_json() for p in exc.problems]}) from None  # fmt: skip
    return _accepted(planned)


def _accepted(planned: PlannedWrite) -> Response:
    write = planned.write
    body = {
        "write_id": write.id, "entity": write.entity, "id": write.canonical_id,
        "operation": write.operation.value,
        "targets": [
            {"system": t.system, "connection": t.connection, "state": t.state.value,
             "fields": sorted(t.fields)}
            for t in planned.targets
        ],
    }  # fmt: skip
    return _json(body, 202, {"Location": f"/v1/writes/{write.id}"})


async def patch_record(request: Request, key: Writer, entity: str, record_id: str) -> Response:
    patch = await _patch_body(request)
    return await _submit(request, key, entity, record_id, patch, WriteOperation.UPDATE)


async def create_record(request: Request, key: Writer, entity: str) -> Response:
    body = await _patch_body(request)
    return await _submit(request, key, entity, None, body, WriteOperation.CREATE)


async def delete_record(request: Request, key: Writer, entity: str, record_id: str) -> Response:
    return await _submit(request, key, entity, record_id, {}, WriteOperation.DELETE)


def _routes(path: str, entity: str) -> None:
    """The five routes of one entity (its name fixed in each, so OpenAPI shows it)."""

    async def list_(
        request: Request, key: Reader,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> Response:  # fmt: skip
        return await list_records(request, key, entity, limit, cursor)

    async def get_(request: Request, key: Reader, record_id: str) -> Response:
        return await get_record(request, key, entity, record_id)

    async def patch_(request: Request, key: Writer, record_id: str) -> Response:
        return await patch_record(request, key, entity, record_id)

    async def post_(request: Request, key: Writer) -> Response:
        return await create_record(request, key, entity)

    async def delete_(request: Request, key: Writer, record_id: str) -> Response:
        return await delete_record(request, key, entity, record_id)

    slug = path.replace("-", "_")
    router.add_api_route(f"/{path}", list_, methods=["GET"], responses=READ_PROBLEMS,
                         summary=f"List {entity} records", name=f"list_{slug}")  # fmt: skip
    router.add_api_route(f"/{path}/{{record_id}}", get_, methods=["GET"],
                         responses=READ_PROBLEMS, summary=f"Get one {entity}",
                         name=f"get_{slug}")  # fmt: skip
    router.add_api_route(f"/{path}/{{record_id}}", patch_, methods=["PATCH"], status_code=202,
                         responses=WRITE_PROBLEMS, name=f"patch_{slug}",
                         summary=f"Change a {entity} (merge patch), routed to owners")  # fmt: skip
    router.add_api_route(f"/{path}", post_, methods=["POST"], status_code=202,
                         responses=WRITE_PROBLEMS, name=f"create_{slug}",
                         summary=f"Create a {entity} in its owning system")  # fmt: skip
    router.add_api_route(f"/{path}/{{record_id}}", delete_, methods=["DELETE"], status_code=202,
                         responses=WRITE_PROBLEMS, name=f"delete_{slug}",
                         summary=f"Delete a {entity} in its owning system")  # fmt: skip


def _register() -> None:
    from cadastre.contract import ENTITY_MODELS

    for path, entity in PATHS.items():
        if entity in ENTITY_MODELS:
            _routes(path, entity)


_register()
