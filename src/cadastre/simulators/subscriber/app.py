"""``SubscriberSimulator``: a platform service that takes Cadastre's outbound webhooks.

It records every delivery it is sent, by ``webhook-id``, checks its Standard Webhooks signature
itself (HMAC-SHA256 over ``{id}.{timestamp}.{body}``, any ``v1,`` entry of the header against any
of its secrets, the timestamp within ``tolerance`` of its clock) and answers what it was told to:
queued ``Reply`` objects first, in order, then ``default``. A reply can be any status (500, 302
with a ``Location``, 410, 429 with ``Retry-After``), or hang: answer only after ``hang`` seconds
on the simulator's clock, or never (``math.inf``: until the client gives up). A delivery whose
signature does not verify is answered 401, as a careful subscriber would.

The common guard of ``Simulator`` applies too: a fault profile (``error_rate``, ``hang_rate``...)
and a rate limit on every path but ``/admin``.

Admin API (JSON): ``GET /admin/received`` (every delivery: ``webhook_id``, ``timestamp``,
``signature``, ``body`` as text, ``at``, ``verified``, ``status``), ``POST /admin/replies`` (a
list of ``{"status", "retry_after"?, "location"?, "hang"?}`` queued), ``POST /admin/default``
(one such object), ``POST /admin/secrets`` (``{"secrets": ["whsec_..."]}``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route

from cadastre.simulators.answers import delay, send_json, wait_for_disconnect
from cadastre.simulators.base import Simulator, json_response, read_json
from cadastre.simulators.faults import odata_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Message, Receive, Scope, Send

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every Standard Webhooks secret
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Reply:
    status: int = 204
    retry_after: str | None = None  # sent as Retry-After (seconds or an HTTP-date)
    location: str | None = None  # sent as Location (a redirect)
    hang: float | None = None  # seconds on the clock before answering; math.inf: never

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError("a reply's status is 100-599")
        if self.hang is not None and (math.isnan(self.hang) or self.hang < 0):
            raise ValueError("hang is seconds >= 0 (inf: never answer)")

    @classmethod
    def from_json(cls, data: Any) -> Reply:
        if not isinstance(data, dict) or set(data) - {"status", "retry_after", "location", "hang"}:
            raise ValueError('a reply is {"status", "retry_after"?, "location"?, "hang"?}')
        hang = data.get("hang")
        return cls(
            status=int(data.get("status", 204)),
            retry_after=None if data.get("retry_after") is None else str(data["retry_after"]),
            location=None if data.get("location") is None else str(data["location"]),
            hang=None if hang is None else float(hang),
        )


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    at: datetime  # on the simulator's clock
    verified: bool | None  # None: no secrets to check with
    status: int | None  # what it was answered; None: the client left before the answer

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode(errors="replace")
        data["at"] = self.at.isoformat()
        return data


class SubscriberSimulator(Simulator):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        secrets: Sequence[str] = (),
        tolerance: float = 300.0,
        path: str = "/hooks",
        default: Reply | None = None,
        faults: FaultProfile | None = None,
    ) -> None:
        """``secrets``: the ``whsec_`` secrets it verifies with (empty: it does not verify);
        ``tolerance``: seconds a ``webhook-timestamp`` may be off its clock."""
        self.secrets = list(secrets)
        self.tolerance = tolerance
        self.path = path
        self.default = default or Reply()
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        super().__init__(clock=clock, faults=faults)

    # ------------------------------------------------------------------ for tests

    def answer(self, *replies: Reply) -> None:
        """Answer the next deliveries with ``replies``, in order (then ``default`` again)."""
        self.replies.extend(replies)

    def of(self, webhook_id: str) -> list[Received]:
        return [r for r in self.received if r.webhook_id == webhook_id]

    def accepted(self, webhook_id: str | None = None) -> list[Received]:
        """Deliveries answered 2xx (of one webhook id)."""
        return [
            r for r in self.received
            if r.status is not None and 200 <= r.status < 300
            and (webhook_id is None or r.webhook_id == webhook_id)
        ]  # fmt: skip

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        return [Route(self.path, _Endpoint(self), methods=["POST"])]

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/received", self._received, methods=["GET"]),
            Route("/admin/replies", self._replies, methods=["POST"]),
            Route("/admin/default", self._default, methods=["POST"]),
            Route("/admin/secrets", self._secrets, methods=["POST"]),
        ]

    async def _received(self, request: Request) -> Response:
        return json_response([r.to_json() for r in self.received])

    async def _replies(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            if not isinstance(body, list):
                raise ValueError("the body is a list of replies")
            self.answer(*(Reply.from_json(item) for item in body))
        except (ValueError, TypeError) as exc:
            return json_response(odata_error("BadRequest", str(exc)), 400)
        return json_response({"queued": len(self.replies)})

    async def _default(self, request: Request) -> Response:
        try:
            self.default = Reply.from_json(await read_json(request))
        except (ValueError, TypeError) as exc:
            return json_response(odata_error("BadRequest", str(exc)), 400)
        return json_response(asdict(self.default))

    async def _secrets(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError as exc:
            return json_response(odata_error("BadRequest", str(exc)), 400)
        secrets = body.get("secrets") if isinstance(body, dict) else None
        if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
            return json_response(odata_error("BadRequest", 'the body is {"secrets": [...]}'), 400)
        self.secrets = list(secrets)
        return json_response({"secrets": len(self.secrets)})

    # ------------------------------------------------------------------ verification

    def verify(self, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool | None:
        """Whether any ``v1`` signature in ``header`` is one of ``secrets``' over this message,
        with a timestamp within ``tolerance`` of the clock (None: no secrets to check)."""
        if not self.secrets:
            return None
        try:
            sent = int(timestamp)
        except ValueError:
            return False
        if abs(self.clock.now().timestamp() - sent) > self.tolerance:
            return False
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            for key in (_key(s) for s in self.secrets) if key
        ]  # fmt: skip
        found = False
        for entry in header.split():
            version, _, value = entry.partition(",")
            if version == "v1":
                for want in expected:
                    found |= hmac.compare_digest(want, value.encode())
        return found


def _key(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


class _Endpoint:
    """The webhook endpoint, at the ASGI level: a hang must notice the client leaving."""

    def __init__(self, sim: SubscriberSimulator) -> None:
        self._sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim = self._sim
        body = await _read_body(receive)
        if body is None:
            return  # the client left mid-request
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        at = sim.clock.now()
        verified = sim.verify(webhook_id, timestamp, body, signature)
        reply = sim.replies.popleft() if sim.replies else sim.default
        if verified is False:
            reply = Reply(401)
        answered = await _answer(sim, reply, receive, send)
        sim.received.append(
            Received(webhook_id, timestamp, signature, body, at, verified, answered)
        )


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    sim: SubscriberSimulator, reply: Reply, receive: Receive, send: Send
) -> int | None:
    if reply.hang is not None:
        if math.isinf(reply.hang):
            await wait_for_disconnect(receive)
            return None
        waited: list[Message] | None = await delay(sim.clock, reply.hang, receive)
        if waited is None:
            return None  # the client gave up first
    headers: dict[str, str] = {}
    if reply.retry_after is not None:
        headers["Retry-After"] = reply.retry_after
    if reply.location is not None:
        headers["Location"] = reply.location
    if reply.status in (204, 304):  # no body, or the client reads it as the next answer
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send_json(send, reply.status, {"status": reply.status}, headers)
    return reply.status
