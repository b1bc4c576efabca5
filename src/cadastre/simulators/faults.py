"""Fault profiles: what a misbehaving vendor does, drawn from a seeded generator so a run can be
repeated exactly.

Each request to a faulted path draws at most one fault kind (the rates are shares of one draw, so
they add up to at most 1), and then, if ``latency`` is set, waits that long on the simulator's
clock before answering. Admin paths are never faulted. The answers are written at the ASGI level
because a reset (a response cut off mid-body) cannot be expressed as an ordinary response.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from email.utils import format_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

    from starlette.types import Message, Receive, Send

    from cadastre.simulators.clock import Clock


class FaultKind(StrEnum):
    ERROR = "error"  # 500, 502 or 503
    THROTTLE = "throttle"  # 429 with Retry-After
    THROTTLE_NO_RETRY_AFTER = "throttle_no_retry_after"
    HANG = "hang"  # never answers
    RESET = "reset"  # headers and part of the body, then the connection drops
    GARBAGE = "garbage"  # 200 with a body that is not JSON


LATENCY = "latency"  # counted in stats beside the kinds, but not drawn: it delays every answer
ERROR_STATUSES = (500, 502, 503)
# A body cut off mid-record, as a proxy that gives up half way would leave it.
GARBAGE_BODY = b'{"@odata.context": "$metadata#Property", "value": [{"ListingKey": "ACT00'
RESET_DECLARED_LENGTH = 65536


class InjectedReset(Exception):
    """Raised after a partial response so the server drops the connection; ``serve`` keeps it out
    of the logs, since resetting is the simulator doing its job."""


@dataclass(frozen=True)
class FaultProfile:
    latency: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    throttle_no_retry_after_rate: float = 0.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    garbage_rate: float = 0.0
    paths: tuple[str, ...] = ()  # path prefixes to fault; empty = every non-admin path
    seed: int = 0
    retry_after: int = 1  # seconds, sent with THROTTLE
    retry_after_http_date: bool = False  # send Retry-After as an HTTP-date instead of seconds

    def __post_init__(self) -> None:
        paths: object = self.paths  # callers may hand in a list (or, by mistake, one string)
        if not isinstance(paths, tuple | list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths is a list of path prefixes")
        object.__setattr__(self, "paths", tuple(paths))
        rates = self.rates()
        if any(not 0.0 <= rate <= 1.0 for rate in rates.values()):
            raise ValueError("fault rates are between 0 and 1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates are shares of one draw and add up to at most 1")
        if self.latency < 0 or self.retry_after < 0:
            raise ValueError("latency and retry_after are not negative")

    def rates(self) -> dict[FaultKind, float]:
        return {
            FaultKind.ERROR: self.error_rate,
            FaultKind.THROTTLE: self.throttle_rate,
            FaultKind.THROTTLE_NO_RETRY_AFTER: self.throttle_no_retry_after_rate,
            FaultKind.HANG: self.hang_rate,
            FaultKind.RESET: self.reset_rate,
            FaultKind.GARBAGE: self.garbage_rate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultProfile:
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown fault profile fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "paths":
                if not isinstance(value, list | tuple):
                    raise ValueError("paths is a list of path prefixes")
                values[name] = tuple(value)
            elif name == "retry_after_http_date":
                if not isinstance(value, bool):
                    raise ValueError(f"{name} is true or false")
                values[name] = value
            elif name in ("seed", "retry_after"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} is an integer")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} is a number")
                values[name] = float(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["paths"] = list(self.paths)
        return data

    def applies_to(self, path: str) -> bool:
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def draw(self, rng: random.Random) -> FaultKind | None:
        rates = self.rates()
        if not any(rates.values()):
            return None  # leave the generator untouched: switching faults on later replays a seed
        point = rng.random()
        for kind, rate in rates.items():
            if point < rate:
                return kind
            point -= rate
        return None


async def send_json(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    payload = orjson.dumps(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def odata_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def answer_fault(
    kind: FaultKind,
    profile: FaultProfile,
    *,
    rng: random.Random,
    clock: Clock,
    receive: Receive,
    send: Send,
) -> None:
    if kind is FaultKind.ERROR:
        status = rng.choice(ERROR_STATUSES)
        await send_json(send, status, odata_error("InjectedFault", f"injected {status}"))
    elif kind is FaultKind.THROTTLE:
        retry_after = str(profile.retry_after)
        if profile.retry_after_http_date:
            when = clock.now() + timedelta(seconds=profile.retry_after)
            retry_after = format_datetime(when, usegmt=True)
        await send_json(
            send, 429, odata_error("TooManyRequests", "slow down"), {"Retry-After": retry_after}
        )
    elif kind is FaultKind.THROTTLE_NO_RETRY_AFTER:
        await send_json(send, 429, odata_error("TooManyRequests", "slow down"))
    elif kind is FaultKind.HANG:
        await wait_for_disconnect(receive)
    elif kind is FaultKind.RESET:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(RESET_DECLARED_LENGTH).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": GARBAGE_BODY, "more_body": True})
        raise InjectedReset
    else:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(GARBAGE_BODY)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": GARBAGE_BODY})


async def wait_for_disconnect(receive: Receive) -> None:
    """A hang: nothing is ever answered, but the handler ends when the client (or the server's
    shutdown) drops the connection, so no task outlives the socket it serves."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def delay(clock: Clock, seconds: float, receive: Receive) -> list[Message] | None:
    """Sleep on the simulator's clock unless the client goes away first.

    Returns the request messages read while watching for a disconnect (to be replayed to the app),
    or None when the client disconnected. Watching matters with a fake clock nobody advances: the
    request would otherwise pin the server's shutdown.
    """
    buffered: list[Message] = []

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            buffered.append(message)

    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
        return None
    return buffered
