"""How a faulted request is answered, written at the ASGI level because a reset (a response cut
off mid-body) or a lost response (no byte at all) cannot be expressed as an ordinary response.

SLOW and LOST_RESPONSE are not answered here: both let the vendor handle the request, so the
guard in ``base`` runs them around the vendor's app.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.simulators.faults import FaultKind, InjectedReset, error_body

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

    from starlette.types import Message, Receive, Send

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile

ERROR_STATUSES = (500, 502, 503)
# A body cut off mid-record, as a proxy that gives up half way would leave it.
TRUNCATED_BODY = b'{"@odata.context": "$metadata#Property", "value": [{"ListingKey": "ACT00'
# What a captive proxy or a load balancer's error page puts where JSON was expected.
GARBAGE_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream server sent an invalid response.</p>\n"
    b"<hr><address>edge-proxy</address></body></html>\n"
)
RESET_DECLARED_LENGTH = 65536


async def send_json(
    send: Send,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    payload = orjson.dumps(body)
    raw_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


async def send_bytes(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
        body, content_type = _error(profile, clock, status, "InjectedFault", f"injected {status}")
        await send_json(send, status, body, content_type=content_type)
    elif kind is FaultKind.THROTTLE:
        retry_after = str(profile.retry_after)
        if profile.retry_after_http_date:
            when = clock.now() + timedelta(seconds=profile.retry_after)
            retry_after = format_datetime(when, usegmt=True)
        body, content_type = _error(profile, clock, 429, "TooManyRequests", "slow down")
        await send_json(send, 429, body, {"Retry-After": retry_after}, content_type)
    elif kind is FaultKind.THROTTLE_NO_RETRY_AFTER:
        body, content_type = _error(profile, clock, 429, "TooManyRequests", "slow down")
        await send_json(send, 429, body, content_type=content_type)
    elif kind is FaultKind.HANG:
        await wait_for_disconnect(receive)
    elif kind is FaultKind.RESET:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(RESET_DECLARED_LENGTH).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": TRUNCATED_BODY, "more_body": True})
        raise InjectedReset
    elif kind is FaultKind.TRUNCATED:
        await send_bytes(send, 200, b"application/json", TRUNCATED_BODY)
    elif kind is FaultKind.GARBAGE:
        await send_bytes(send, 200, b"text/html; charset=utf-8", GARBAGE_BODY)
    else:
        raise ValueError(f"{kind} is answered by the vendor, not instead of it")


def _error(
    profile: FaultProfile, clock: Clock, status: int, code: str, message: str
) -> tuple[dict[str, Any], str]:
    # A request id that differs per answer (as vendors' do) yet repeats with a fake clock: drawn
    # from the fault generator it would shift every later draw of the seeded run.
    request_id = hashlib.sha256(f"{clock.monotonic()}:{status}".encode()).hexdigest()[:16]
    return error_body(profile.error_format, status, code, message, request_id)


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


def replay(buffered: list[Message], receive: Receive) -> Receive:
    """``receive`` again, first handing back what ``delay`` read while it watched."""

    async def replaying() -> Message:
        if buffered:
            return buffered.pop(0)
        return await receive()

    return replaying
