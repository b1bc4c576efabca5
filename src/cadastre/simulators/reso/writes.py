"""Writes to the MLS: RESO Web API Add (``POST /odata/Property``) and the ``Idempotency-Key``
header of the IETF draft (draft-ietf-httpapi-idempotency-key-header), which is how a client makes
a retried write safe.

With a key, the first request that completes stores its response (whatever the status) beside a
fingerprint of its body; a later request with the same key and the same body gets that response
again, marked ``Idempotent-Replayed: true``, and nothing is applied again. The same key with a
different body is refused 422; a key whose first request is still being handled, 409. Bodies are
compared as JSON (key order and spacing do not matter), else byte for byte. Keys are kept for the
simulator's life and shared by every client (the simulator has one). Without a key, every request
applies.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from cadastre.simulators.base import SimStats
from cadastre.simulators.reso.records import sanitize_change
from cadastre.simulators.reso.schema import KEY_FIELD, TIMESTAMP_FIELD

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from starlette.requests import Request

    from cadastre.simulators.reso.schema import FieldSpec

IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass
class ResoStats(SimStats):
    creates: int = 0  # writes applied; a replayed or refused write is not one
    applied_by_listing: Counter[str] = field(default_factory=Counter)  # ListingKey -> writes
    idempotent_replays: int = 0  # answers served again from the Idempotency-Key store

    def reset(self) -> None:
        super().reset()
        self.creates = self.idempotent_replays = 0
        self.applied_by_listing.clear()


@dataclass(frozen=True)
class _Stored:
    fingerprint: bytes
    status: int
    body: bytes
    headers: dict[str, str]


class IdempotencyKeys:
    def __init__(self, stats: ResoStats) -> None:
        self._stats = stats
        self._done: dict[str, _Stored] = {}
        self._busy: set[str] = set()

    def __repr__(self) -> str:
        return f"IdempotencyKeys(done={len(self._done)}, busy={len(self._busy)})"

    async def handle(
        self, request: Request, process: Callable[[bytes], Awaitable[Response | None]]
    ) -> Response:
        """Run ``process`` on the request body at most once per Idempotency-Key. ``process``
        returns None when the client left before the write was applied: the key stays unused."""
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return await process(await request.body()) or _abandoned()
        if not key.strip():
            return _error(400, "BadRequest", "the Idempotency-Key header is empty")
        if key in self._busy:
            return _error(409, "Conflict", "a request with this Idempotency-Key is in progress")
        stored = self._done.get(key)
        if stored is not None:
            if _fingerprint(await request.body()) != stored.fingerprint:
                return _error(
                    422, "UnprocessableEntity", "this Idempotency-Key was used with another body"
                )
            self._stats.idempotent_replays += 1
            headers = {**stored.headers, REPLAYED_HEADER: "true"}
            return Response(stored.body, stored.status, headers)
        # Held from before the body is read, so a retry racing a slow original sees 409.
        self._busy.add(key)
        try:
            raw = await request.body()
            response = await process(raw)
            if response is None:
                return _abandoned()
            body, headers = bytes(response.body), dict(response.headers)
            self._done[key] = _Stored(_fingerprint(raw), response.status_code, body, headers)
            return response
        finally:
            self._busy.discard(key)


def record_from_body(raw: bytes, fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """A whole Property record from an Add body, every schema field present (absent ones null).
    ModificationTimestamp is the server's to set; OData annotations (``@odata.*``) are ignored."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object: one Property record")
    key = body.get(KEY_FIELD)
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{KEY_FIELD} is a non-empty string")
    names = [name for name in body if not name.startswith("@") and name != TIMESTAMP_FIELD]
    unknown = sorted(name for name in names if name not in fields)
    if unknown:
        raise ValueError(f"unknown fields: {unknown[:5]}")
    data: dict[str, Any] = dict.fromkeys(fields)
    for name in names:
        data[name] = sanitize_change(fields[name], body[name])
    return data


def _fingerprint(raw: bytes) -> bytes:
    try:
        canonical = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = raw
    return hashlib.sha256(canonical).digest()


def _error(status: int, code: str, message: str) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, {"OData-Version": "4.0"}, media_type="application/json")


def _abandoned() -> Response:
    # Sent to a client that has gone already: nobody reads it.
    return _error(503, "Abandoned", "the client disconnected before the write was applied")
