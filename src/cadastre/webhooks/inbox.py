"""``WebhookReceiver``: a vendor's webhook request let in, or refused, before anything reads it.

For ``POST /webhooks/{tenant}/{connection}``, in this order, each step cheaper than the next:

1. the endpoint: the connection and its ``webhook:`` block (held ``endpoint_ttl`` seconds, so a
   burst costs no look-up per request); none -> 404, an unusable block -> 503;
2. ``Content-Length`` over ``max_body_bytes`` -> 413, before a byte of the body is read;
3. the scheme's headers: signature present, signed timestamp within the tolerance -> else 401;
4. the body, read up to ``max_body_bytes`` + 1 bytes and no further -> 413 past the limit;
5. the signature over the raw bytes, with the secrets held by ``WebhookCredentials`` (a failure
   looks at the credential's version once more, so a just-rotated secret verifies) -> else 401;
6. the durable write (``InboxWriter``): stored, or found held (a replay: answered 2xx, stored
   once); only then the answer. The normaliser is nudged.

The body is never parsed here: a forged request is refused on its bytes alone. Every refusal of a
known endpoint is counted (``RefusalLog``).
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cadastre.config import describe_validation_error
from cadastre.errors import WebhookRefused
from cadastre.observe import get_logger
from cadastre.ports import ReceivedWebhook
from cadastre.webhooks.credentials import WebhookCredentials
from cadastre.webhooks.durable import InboxWriter
from cadastre.webhooks.normalise import WebhookNormaliser
from cadastre.webhooks.refusals import RefusalLog, kept_headers
from cadastre.webhooks.settings import WebhookSettings
from cadastre.webhooks.verify import Verifier, verifier

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Mapping

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, Store
    from cadastre.vault import Vault
    from cadastre.webhooks.normalise import NormaliserHost

_log = get_logger("cadastre.webhooks.in")
_TENANT = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_CONNECTION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    connection: str
    version: int  # the connection's: an edit is picked up within endpoint_ttl
    settings: WebhookSettings
    verifier: Verifier


@dataclass(frozen=True)
class _NoEndpoint:
    """Why a (tenant, connection) has no endpoint, held like an endpoint (a new exception is
    raised each time: re-raising one instance would grow its traceback without end)."""

    reason: str
    message: str
    status: int

    def refusal(self) -> WebhookRefused:
        return WebhookRefused(self.reason, self.message, status=self.status)


@dataclass(frozen=True)
class Accepted:
    message_id: str
    stored: bool  # False: the message was held already (a replay or a vendor's retry)


class WebhookReceiver:
    def __init__(
        self, store: Store, vault: Vault, clock: Clock, *, public_url: str,
        metrics: Metrics | None = None, endpoint_ttl: float = 2.0, max_endpoints: int = 4096,
    ) -> None:  # fmt: skip
        self._store = store
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._metrics = metrics
        self._ttl = endpoint_ttl
        self._max_endpoints = max_endpoints
        # (tenant, connection) -> (checked at, the endpoint or why there is none)
        self._endpoints: OrderedDict[tuple[str, str], tuple[float, Endpoint | _NoEndpoint]]
        self._endpoints = OrderedDict()
        self._looking: dict[tuple[str, str], asyncio.Future[Endpoint | _NoEndpoint]] = {}
        self._listeners: list[Callable[[str, str], None]] = []
        self.credentials = WebhookCredentials(vault, clock)
        self.refusals = RefusalLog(clock, metrics)
        self.writer = InboxWriter(store, self.refusals, metrics=metrics)  # counts them

    def __repr__(self) -> str:
        return f"WebhookReceiver(endpoints={len(self._endpoints)})"

    def on_stored(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``listener(tenant, connection)`` after each webhook newly stored; returns the
        call that stops it (the normaliser's nudge)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def normaliser(self, host: NormaliserHost, **options: Any) -> WebhookNormaliser:
        """The background worker that turns stored webhooks into records (``Hub._workers``:
        the hub is the host), nudged by this receiver."""
        return WebhookNormaliser(
            self._store, self._clock, runner=host.runner, locks=host.locks,
            open_source=host.open_source, receiver=self, metrics=self._metrics, **options,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self.writer.aclose()

    # ------------------------------------------------------------------ receiving

    async def receive(
        self, tenant: str, connection: str, *, method: str, path: str, query: str,
        headers: Mapping[str, str], body: AsyncIterable[bytes],
    ) -> Accepted:  # fmt: skip
        """Let one request in (stored durably when this returns) or raise ``WebhookRefused``.
        ``headers`` have lower-case names; ``path`` is the raw (still percent-encoded) path."""
        endpoint = self._held(tenant, connection) or await self.endpoint(tenant, connection)
        check = endpoint.verifier
        try:
            message_id, raw = await self._verify(endpoint, method, path, query, headers, body)
        except WebhookRefused as refused:
            example = kept_headers(headers, check.signature_headers)
            self.refusals.record(tenant, connection, refused.reason, example, str(refused))
            self.writer.kick()
            raise
        item = ReceivedWebhook(
            connection, message_id, self._clock.now(),
            kept_headers(headers, check.signature_headers), raw,
        )  # fmt: skip
        stored = await self.writer.write(tenant, item)
        if stored and self._listeners:
            for listener in list(self._listeners):
                listener(tenant, connection)
        return Accepted(message_id, stored)

    async def _verify(
        self, endpoint: Endpoint, method: str, path: str, query: str,
        headers: Mapping[str, str], body: AsyncIterable[bytes],
    ) -> tuple[str, bytes]:  # fmt: skip
        settings, check = endpoint.settings, endpoint.verifier
        limit = settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise _too_large(limit)
        now = self._clock.now()  # the request's arrival: its timestamp and secrets are judged at it
        check.check_headers(headers, now)
        raw = await read_limited(body, limit)
        url = settings.url or self._public_url + path + (f"?{query}" if query else "")
        tenant, name = endpoint.tenant, settings.credential
        held = self.credentials.held(tenant, name) or await self.credentials.get(tenant, name)
        try:
            return check.verify(method, url, headers, raw, held.usable(now)), raw
        except WebhookRefused as refused:
            if refused.reason != "bad_signature":
                raise
            # The vendor may sign with a secret rotated since we last looked: look again (at
            # most every second), and verify once more only if the credential changed.
            fresh = await self.credentials.get(tenant, name, fresh=True)
            if fresh.version == held.version:
                raise
            return check.verify(method, url, headers, raw, fresh.usable(now)), raw

    # ------------------------------------------------------------------ endpoints

    def _held(self, tenant: str, connection: str) -> Endpoint | None:
        """The endpoint when it was looked up less than ``endpoint_ttl`` ago (most requests:
        no coroutine), else None: ``endpoint`` looks it up."""
        held = self._endpoints.get((tenant, connection))
        if held is None or self._clock.monotonic() - held[0] >= self._ttl:
            return None
        found = held[1]
        if isinstance(found, _NoEndpoint):
            return None
        self._endpoints.move_to_end((tenant, connection))
        return found

    async def endpoint(self, tenant: str, connection: str) -> Endpoint:
        """The connection's webhook endpoint, or ``WebhookRefused`` (404: none; 503: its
        ``webhook:`` block cannot be used)."""
        key = (tenant, connection)
        held = self._endpoints.get(key)  # only names that passed the check below are held
        if held is None and (
            not _TENANT.fullmatch(tenant) or not _CONNECTION.fullmatch(connection)
        ):
            missing = _unknown()
            self.refusals.unknown(tenant, connection, missing.message)
            raise missing.refusal()
        if held is None or self._clock.monotonic() - held[0] >= self._ttl:
            found = await self._refresh(key)
        else:
            self._endpoints.move_to_end(key)
            found = held[1]
        if isinstance(found, _NoEndpoint):
            if found.status == 404:
                self.refusals.unknown(tenant, connection, found.message)
            else:
                self.refusals.record(tenant, connection, found.reason, {}, found.message)
                self.writer.kick()
            raise found.refusal()
        return found

    async def _refresh(self, key: tuple[str, str]) -> Endpoint | _NoEndpoint:
        """Look the endpoint up; the requests that find it due meanwhile share the look-up."""
        looking = self._looking.get(key)
        if looking is not None:
            return await asyncio.shield(looking)
        future: asyncio.Future[Endpoint | _NoEndpoint] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._looking[key] = future
        try:
            found = await self._look_up(*key)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._looking[key]
        future.set_result(found)
        self._endpoints[key] = (self._clock.monotonic(), found)
        self._endpoints.move_to_end(key)
        while len(self._endpoints) > self._max_endpoints:
            self._endpoints.popitem(last=False)
        return found

    def forget(self, tenant: str, connection: str) -> None:
        """Look the endpoint up again on its next request (after an edit, in tests)."""
        self._endpoints.pop((tenant, connection), None)

    async def _look_up(self, tenant: str, connection: str) -> Endpoint | _NoEndpoint:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.connections.get(connection)
        if found is None:
            return _unknown()
        block = found.config.get("webhook")
        if block is None:
            return _NoEndpoint(
                "unknown_connection", f"connection {connection!r} receives no webhooks", 404
            )
        try:
            settings = WebhookSettings.model_validate(block)
        except ValidationError as exc:
            problem = describe_validation_error(exc, lambda where: f"webhook.{where}")
            _log.error("connection %r of tenant %r: its webhook block cannot be used: %s",
                       connection, tenant, problem)  # fmt: skip
            return _NoEndpoint(
                "not_configured", f"connection {connection!r} has an unusable webhook block", 503
            )
        return Endpoint(tenant, connection, found.version, settings, verifier(settings))


def _unknown() -> _NoEndpoint:
    return _NoEndpoint("unknown_connection", "no webhook endpoint here", 404)


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """The body, or ``WebhookRefused`` (413) as soon as it passes ``limit`` bytes: nothing after
    that chunk is read."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)  # one chunk, the usual case, is returned as it is


def _too_large(limit: int) -> WebhookRefused:
    return WebhookRefused("too_large", f"the body is larger than {limit} bytes", status=413)
