"""``Idempotency-Key`` on the unified API's own writes, Stripe style (``docs/api-idempotency.md``).

An ASGI middleware rather than a FastAPI dependency, because it must see the whole response to
store it and answer a repeat without the route running at all, and because a dependency would
have to be named by every write route: this covers every POST, PUT, PATCH and DELETE under
``/v1`` (the OAuth2 callback aside; vendors' webhooks are not under ``/v1``), including routes
added later, with no edit to them. It sits outside ``CatchAll``, so a route that crashes is seen
as the 500 problem its client gets, and that 500 is stored and replayed like any answer.

Per request with the header: authenticate the bearer key (without a valid one the route answers
its 401 and nothing is held); check the key (400); hold it for the tenant in flight, committed
before the route runs, so a concurrent repeat finds it held (409, ``Retry-After: 1``); run the
route with the body already read; store status, the replayed headers and the body; then answer.
A repeat after that gets the stored response with ``Idempotent-Replayed: true``; the same key with
another method, target or body gets 422. A response marked ``Cache-Control: no-store`` carries a
secret (a subscription's signing secret): its body is sealed with the vault's master key.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cadastre.api.problems import Problem, problem_response
from cadastre.directory.idempotency import fingerprint, valid_key
from cadastre.errors import AuthenticationError, CadastreError, DecryptionFailed, Transient
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    IdempotencyRecord,
    IdempotencyState,
    SealedSecret,
    Secret,
    StoredResponse,
)
from cadastre.vault.crypto import RowIdentity, seal, unseal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import FastAPI, Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from cadastre.bootstrap import Hub

log = logging.getLogger("cadastre.api.idempotency")

HEADER = b"idempotency-key"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PREFIX = "/v1/"
EXEMPT = ("/v1/oauth/",)  # a vendor's browser redirect: no API key, no tenant to scope a key to
REPLAYED = frozenset({b"content-type", b"location", b"cache-control"})
# Refusals of the caller, not answers to the request: the key was wrong, lacked a scope or
# ran out of its rate. Nothing was written, and the caller is expected to fix its key or wait,
# then send the same request again with the same key - which a stored 401/403/429 would refuse
# for 24 hours. So the key is released instead, as Stripe does for requests that never began.
NOT_STORED = frozenset({401, 403, 429})
INVALID_KEY = "urn:cadastre:problem:invalid-idempotency-key"
KEY_IN_USE = "urn:cadastre:problem:idempotency-key-in-use"
KEY_REUSED = "urn:cadastre:problem:idempotency-key-reused"
_MARK = "cadastre.idempotency"


def install(app: FastAPI) -> None:
    """Add the middleware (outermost of ours: call after ``CatchAll``) and mark requests that
    FastAPI refuses before their route runs - a body or parameter that does not validate, no
    such route, a method the route lacks: their answers are not stored either, since the
    request never began and sending it again (corrected) is safe."""
    for kind in (RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, _marking(app.exception_handlers[kind]))
    app.add_middleware(IdempotencyKeys)
    _document(app)


HEADER_DOC = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "1-255 visible ASCII characters, unique per logical write (a UUID): a repeat "
    "within 24 hours gets the first answer again (Idempotent-Replayed: true), never a second "
    "effect. Scoped to the API key's tenant.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}  # fmt: skip
RESPONSES_DOC = {
    "400": "The Idempotency-Key header is not 1-255 visible ASCII characters",
    "409": "A request with this Idempotency-Key is still running (Retry-After: 1)",
    "422": "This Idempotency-Key was used for another request (method, path or body)",
}


def _document(app: FastAPI) -> None:
    """Name the header and its answers on every covered operation of the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not covered(method.upper(), path):
                    continue
                operation.setdefault("parameters", []).append(dict(HEADER_DOC))
                responses = operation.setdefault("responses", {})
                for status, description in RESPONSES_DOC.items():
                    responses.setdefault(status, {"description": description})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _marking(
    handler: Callable[[Request, Any], Response | Awaitable[Response]],
) -> Callable[[Request, Any], Awaitable[Response]]:
    async def marked(request: Request, exc: Any) -> Response:
        held = request.scope.get(_MARK)
        if isinstance(held, _Held):
            held.refused = True
        answer = handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return marked


@dataclass
class _Held:
    refused: bool = False


def covered(method: str, path: str) -> bool:
    return method in WRITES and path.startswith(PREFIX) and not path.startswith(EXEMPT)


class IdempotencyKeys:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, lock: timedelta | None = None) -> None:
        self.app = app
        self._lock = lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not covered(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope["headers"] if k == HEADER]
        if not values:  # writes without a key are taken as before
            await self.app(scope, receive, send)
            return
        hub: Hub = scope["app"].state.hub
        try:
            key = await _caller(hub, scope)
            if key is None:  # the route answers its 401; nothing is held or stored
                await self.app(scope, receive, send)
                return
            given = _key(values)
            body = await _body(receive)
            if body is None:  # the client went away before sending its body
                return
            await self._keyed(hub, key.tenant, given, body, scope, receive, send)
        except Problem as problem:
            await problem_response(problem, scope["path"])(scope, receive, send)
        except CadastreError as exc:  # our own store calls; nothing of the request ran
            await _failed(exc, scope, receive, send)

    async def _keyed(
        self, hub: Hub, tenant: str, key: str, body: bytes, scope: Scope, receive: Receive,
        send: Send,
    ) -> None:  # fmt: skip
        method, target = scope["method"], _target(scope)
        print_ = fingerprint(method, target, body)
        holder = secrets.token_hex(16)
        lock = self._lock or timedelta(seconds=hub.settings.idempotency_lock_seconds)
        async with hub.store.unit_of_work(tenant) as uow:
            begun = await uow.idempotency.begin(
                key, method=method, path=target, fingerprint=print_, holder=holder,
                locked_until=hub.clock.now() + lock,
            )  # fmt: skip
            await uow.commit()
        if not begun.started:
            await _answer_held(hub, tenant, begun.record, print_, scope, send)
            return
        held = _Held()
        scope[_MARK] = held
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        # An exception out of the route (CatchAll re-raises only once an answer has begun) or a
        # cancellation leaves the key in flight, as a crash does: it can be retried once its
        # lock runs out, since whether the write happened is not known here.
        await self.app(scope, _replay(body, receive), capture)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is None:
            await _release(hub, tenant, key, holder)
            return
        status = int(start["status"])
        # No endpoint: the router answered without a route (a 307 to the path without its
        # trailing slash): the client sends the key again to the right path, which must run.
        if held.refused or status in NOT_STORED or scope.get("endpoint") is None:
            await _release(hub, tenant, key, holder)
        else:
            await _store(hub, tenant, key, holder, start, messages)
        for message in messages:  # answered only once stored: a lost answer can be asked again
            await send(message)


async def _caller(hub: Hub, scope: Scope) -> ApiKey | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            try:
                return await hub.keys.authenticate(Secret(token.strip()), need=ApiKeyScope.READ)
            except AuthenticationError:
                return None
    return None


def _key(values: list[bytes]) -> str:
    if len(values) > 1:
        raise Problem(400, "send one Idempotency-Key header, not several", type=INVALID_KEY,
                      title="Invalid Idempotency-Key")  # fmt: skip
    text = values[0].decode("latin-1")
    if not valid_key(text):
        raise Problem(
            400, "an Idempotency-Key is 1 to 255 visible ASCII characters (no spaces)",
            type=INVALID_KEY, title="Invalid Idempotency-Key",
        )  # fmt: skip
    return text


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the server's own messages (a disconnect, when it comes)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _target(scope: Scope) -> str:
    query = scope.get("query_string", b"")
    path: str = scope["path"]
    return path + ("?" + query.decode("latin-1") if query else "")


def _row(tenant: str, key: str) -> RowIdentity:
    # the sealed body is bound to its tenant and key: copied into another row, it does not open
    return RowIdentity(tenant, f"api-idempotency:{key}", "body")


async def _store(
    hub: Hub, tenant: str, key: str, holder: str, start: Message, messages: list[Message]
) -> None:
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in start.get("headers", [])
        if name.lower() in REPLAYED
    }
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    response = StoredResponse(int(start["status"]), headers, body)
    try:
        if "no-store" in headers.get("cache-control", "").lower():
            sealed = seal(hub.vault.keys, _row(tenant, key), body.decode("latin-1"))
            response = StoredResponse(
                response.status, headers, sealed.ciphertext, sealed.key_id, sealed.wrapped_key
            )
        async with hub.store.unit_of_work(tenant) as uow:
            stored = await uow.idempotency.finish(key, holder=holder, response=response)
            await uow.commit()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the client still gets its answer
        # The write happened and its answer goes out; only a repeat after the lock runs out
        # could run it again. Logged (the key, never the body).
        log.warning("the response to idempotency key %r was not stored: %r", key, exc)
        return
    if not stored:
        log.warning("idempotency key %r was taken over while its request ran (lock too short?)",
                    key)  # fmt: skip


async def _release(hub: Hub, tenant: str, key: str, holder: str) -> None:
    try:
        async with hub.store.unit_of_work(tenant) as uow:
            await uow.idempotency.release(key, holder=holder)
            await uow.commit()
    except CadastreError as exc:  # held until its lock runs out, then free again
        log.warning("idempotency key %r was not released: %s", key, exc)


async def _answer_held(
    hub: Hub, tenant: str, record: IdempotencyRecord, print_: str, scope: Scope, send: Send
) -> None:
    if record.fingerprint != print_:
        raise Problem(
            422,
            "this Idempotency-Key was used for another request (method, path or body "
            "differ); use a new key for a new request",
            type=KEY_REUSED, title="Idempotency-Key reused",
        )  # fmt: skip
    if record.state is IdempotencyState.IN_FLIGHT or record.response is None:
        raise Problem(
            409, "a request with this Idempotency-Key is still being processed; try again",
            type=KEY_IN_USE, title="Idempotency-Key in use", headers={"Retry-After": "1"},
        )  # fmt: skip
    stored = record.response
    body = stored.body
    if stored.key_id is not None and stored.wrapped_key is not None:
        sealed = SealedSecret("body", stored.key_id, stored.wrapped_key, stored.body)
        try:
            body = unseal(hub.vault.keys, _row(tenant, record.key), sealed).encode("latin-1")
        except DecryptionFailed:
            log.error("the stored response of idempotency key %r does not open", record.key)
            raise Problem(500, "the stored response of this Idempotency-Key cannot be read; "
                          "use a new key") from None  # fmt: skip
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers.items()]
    if stored.status >= 200 and stored.status not in (204, 304):  # those carry no body
        headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _failed(exc: CadastreError, scope: Scope, receive: Receive, send: Send) -> None:
    if isinstance(exc, Transient):
        log.warning("idempotency key handling failed, temporarily: %s", type(exc).__name__)
        problem = Problem(503, "temporarily unavailable; try again", headers={"Retry-After": "1"})
    else:
        log.error("idempotency key handling failed", exc_info=exc)
        problem = Problem(500, "internal error")
    await problem_response(problem, scope["path"])(scope, receive, send)
