"""API keys that rotate with an overlap, as vendors with "roll key" buttons do.

``GET /api/keyed`` takes a key in the ``X-Api-Key`` header or the ``api_key`` query parameter.
``POST /keys/rotate`` (the current key in ``X-Api-Key``) answers ``{"key": <new>,
"previous_valid_until": <ISO 8601>}``: the old key keeps working for ``key_overlap`` seconds of the
simulator clock, then gets 401. A key already rotated cannot rotate again (409): if the answer to
a rotation is lost, the new key is lost with it, and the old one runs out at its deadline.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cadastre.simulators.auth.common import NO_STORE, iso, oauth_error
from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.auth.settings import AuthSettings, AuthStats
    from cadastre.simulators.clock import Clock

HEADER = "x-api-key"
QUERY = "api_key"


@dataclass(eq=False)
class _Key:
    deadline: float | None = None  # monotonic; None while the key is current
    valid_until: datetime | None = None  # the same instant, as the answer told it


class ApiKeys:
    def __init__(
        self, clock: Clock, settings: Callable[[], AuthSettings], stats: AuthStats
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self._keys: dict[str, _Key] = {}

    def __repr__(self) -> str:
        current = sum(1 for key in self._keys.values() if key.deadline is None)
        return f"ApiKeys(current={current}, rotated={len(self._keys) - current})"

    def seed(self, key: str) -> None:
        """Make ``key`` a current key (again, if it had been rotated)."""
        if not key or key != key.strip():
            raise ValueError("a key is a non-empty string without surrounding spaces")
        self._keys[key] = _Key()

    def _valid(self, key: str | None) -> _Key | None:
        record = self._keys.get(key) if key else None
        if record is None:
            return None
        if record.deadline is not None and self._clock.monotonic() >= record.deadline:
            return None
        return record

    async def resource(self, request: Request) -> Response:
        """``GET /api/keyed``."""
        self._stats.api_key_calls += 1
        key = request.headers.get(HEADER) or request.query_params.get(QUERY)
        record = self._valid(key)
        if record is None:
            return self._refuse(key)
        until = iso(record.valid_until) if record.valid_until is not None else None
        return json_response({"ok": True, "key_valid_until": until})

    async def rotate(self, request: Request) -> Response:
        """``POST /keys/rotate``."""
        key = request.headers.get(HEADER)
        record = self._valid(key)
        if key is None or record is None:
            return self._refuse(key)
        if record.deadline is not None:
            return oauth_error("key_already_rotated", "this key was rotated already", 409)
        overlap = self._settings().key_overlap
        record.deadline = self._clock.monotonic() + overlap
        record.valid_until = self._clock.now() + timedelta(seconds=overlap)
        new = secrets.token_urlsafe(32)
        self._keys[new] = _Key()
        self._stats.api_key_rotations += 1
        body = {"key": new, "previous_valid_until": iso(record.valid_until)}
        return json_response(body, headers=NO_STORE)

    def _refuse(self, key: str | None) -> Response:
        self._stats.api_key_refused += 1
        if not key:
            return oauth_error("invalid_request", "an API key is needed in X-Api-Key", 401)
        description = "the key has expired" if key in self._keys else "the key is unknown"
        return oauth_error("invalid_key", description, 401)
