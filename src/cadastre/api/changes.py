"""``GET /v1/changes``: the pull change feed, for consumers that cannot take webhooks.

The tenant's published events (CloudEvents 1.0 JSON, as the bus carries them) in the order the
relay published them (``feed_seq``), after an opaque cursor: ``{"events": [...], "next":
"<cursor>"}``. ``next`` is always given - the cursor after the last event returned, or the one
sent when nothing is new - so a client polls with it for ever. ``types`` keeps the named event
types and reads each as the major named (``cadastre.listing.updated.v2`` gets v1 events
converted). ``wait`` (seconds, at most 30) holds an empty answer open until something is
published. A cursor belongs to its tenant: another tenant's is a 400, so a feed cannot be walked
with a stolen position.

A key of class IDX or VOW reads what it reads on ``/v1/listings``: a record change leaves out the
fields the writing connection's mapping withholds from that class (values, removals, scores), and
other events - which may name fields or carry vendor values - are not served to it (the cursor
moves past them).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from cadastre.api.auth import Reader, hub_of
from cadastre.api.cursor import InvalidCursor, decode_cursor, encode_cursor, query_fingerprint
from cadastre.api.payloads import PayloadPolicy
from cadastre.api.problems import (
    INVALID_CURSOR,
    INVALID_PARAMETERS,
    PROBLEM_JSON,
    Problem,
    ProblemDetails,
)
from cadastre.bootstrap import Hub
from cadastre.contract.events import ENTITIES, EventEnvelope, entity_event_type, family, structured
from cadastre.contract.upcast import by_family, pick
from cadastre.errors import UpcastUnavailable
from cadastre.ports import PayloadClass

MAX_PAGE = 500
MAX_WAIT = 30.0
SCAN = 2000  # events read per request at most when ``types`` filters most of them out
_CHANGES = frozenset(
    family(entity_event_type(entity, verb))
    for entity in ENTITIES
    for verb in ("created", "updated", "deleted")
)

router = APIRouter(prefix="/v1", tags=["changes"])


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {"model": ProblemDetails, "description": description,
            "content": {PROBLEM_JSON: {"schema": schema}}}  # fmt: skip


@router.get(
    "/changes",
    responses={
        200: {"description": '`{"events": [CloudEvents JSON], "next": "<cursor>"}`'},
        400: _problem("The cursor is garbled or belongs to another tenant"),
        401: _problem("No API key, or one that is invalid or revoked"),
        422: _problem("A parameter is invalid; `errors` names each one"),
    },
    summary="Read the change feed",
)
async def read_changes(
    request: Request,
    key: Reader,
    after: Annotated[
        str | None, Query(max_length=1024, description="a `next` from an earlier answer")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    types: Annotated[
        list[str] | None,
        Query(
            description="event types to keep (repeat or comma-separate); each is read as the "
            "major named"
        ),
    ] = None,
    wait: Annotated[
        float,
        Query(ge=0, description=f"seconds to wait for events when none is new (<= {MAX_WAIT:g})"),
    ] = 0,
) -> Response:
    fingerprint = query_fingerprint(f"{key.tenant}\nchanges", [])
    try:
        seq = 0 if after is None else int(decode_cursor(after, fingerprint))
    except (InvalidCursor, ValueError):
        raise Problem(400, "the cursor is not one this feed handed out to this key's tenant",
                      type=INVALID_CURSOR, title="Invalid cursor") from None  # fmt: skip
    wanted = _wanted(types)
    hub = hub_of(request)
    policy = (
        None
        if key.payload_class is PayloadClass.FULL
        else PayloadPolicy(hub, key.tenant, key.payload_class)
    )
    deadline = hub.clock.monotonic() + min(wait, MAX_WAIT)
    while True:
        events, moved = await _page(hub, key.tenant, seq, limit, wanted, policy)
        left = deadline - hub.clock.monotonic()
        if moved != seq or left <= 0:  # something read (kept or filtered out), or time is up
            seq = moved
            break
        await hub.relay.wait_published(min(left, hub.settings.relay_poll_seconds))
    body = {"events": events, "next": encode_cursor(str(seq), fingerprint)}
    return Response(orjson.dumps(body), media_type="application/json")


def _wanted(types: list[str] | None) -> dict[str, str] | None:
    if not types:
        return None
    names = [name.strip() for entry in types for name in entry.split(",") if name.strip()]
    try:
        return by_family(names)
    except (UpcastUnavailable, ValueError):
        # as every 422 of the API: what is wrong, never the value sent
        problem = "an unknown event type, or two majors of one event family"
        raise Problem(
            422, "invalid request parameters: types", type=INVALID_PARAMETERS,
            title="Invalid request parameters",
            extra={"errors": [{"in": "query", "name": "types", "problem": problem}]},
        ) from None  # fmt: skip


async def _page(
    hub: Hub, tenant: str, seq: int, limit: int, wanted: dict[str, str] | None,
    policy: PayloadPolicy | None,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """Up to ``limit`` events after ``seq`` and the feed_seq to continue after (past events
    ``types`` or the key's class left out, so the client does not read them again)."""
    events: list[dict[str, Any]] = []
    scanned = 0
    filtered = wanted is not None or policy is not None
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        while len(events) < limit and scanned < SCAN:
            batch = min(MAX_PAGE, SCAN - scanned) if filtered else limit - len(events)
            page = await uow.outbox.feed(after=seq, limit=batch)
            if not page:
                break
            for message in page:
                scanned += 1
                seq = message.feed_seq or seq
                if (served := await _served(message.event, wanted, policy)) is not None:
                    events.append(served)
                    if len(events) == limit:
                        break
    return events, seq


async def _served(
    event: EventEnvelope, wanted: dict[str, str] | None, policy: PayloadPolicy | None
) -> dict[str, Any] | None:
    if wanted is not None:
        if family(event.type) not in wanted:
            return None
        event = pick(event, wanted)
    if policy is None:
        return structured(event)
    if family(event.type) not in _CHANGES:
        return None  # may name fields or carry vendor values: not for a restricted class
    origin = event.data.get("origin")
    connection = origin.get("connection") if isinstance(origin, dict) else None
    # As on /v1/listings: a field with no connection behind it is not withheld.
    withheld = await policy.withheld(connection) if connection else frozenset()
    return structured(event.model_copy(update={"data": _masked(event.data, withheld)}))


def _masked(data: dict[str, Any], withheld: frozenset[str]) -> dict[str, Any]:
    """A change's data (v1 or v2) without the fields in ``withheld`` ("*": all of them)."""
    if not withheld:
        return data

    def kept(name: object) -> bool:
        return "*" not in withheld and name not in withheld

    out = dict(data)
    for name in ("fields", "changed"):  # v1, v2
        if isinstance(out.get(name), dict):
            out[name] = {k: v for k, v in out[name].items() if kept(k)}
    if isinstance(out.get("removed"), list):
        out["removed"] = [k for k in out["removed"] if kept(k)]
    confidence = out.get("confidence")  # v2: a withheld field's score would say it exists
    if isinstance(confidence, dict) and isinstance(confidence.get("fields"), dict):
        scores = {k: v for k, v in confidence["fields"].items() if kept(k)}
        out["confidence"] = {**confidence, "fields": scores}
    return out
