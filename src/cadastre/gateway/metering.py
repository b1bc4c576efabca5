"""The innermost layer above HTTP: count and time every request that actually goes to a vendor.

Sitting at the bottom, it sees each attempt, each credential resend and each token request (the
OAuth2 authenticator sends through it), which is what the vendor's own meter counts too.

- ``cadastre_vendor_requests_total{vendor, connection, outcome}``: ``outcome`` is the
  ``Outcome`` value ``classify`` gives the answer (``success``, ``retry``, ``rate_limited``,
  ``fail``); a 401 counts as ``fail`` here, since the credential mark is added above.
- ``cadastre_vendor_request_seconds{vendor, connection}``: until the response headers arrive
  (the body is read by the layers above, which may stream it).

One debug line per request names the URL path only: query strings may carry keys or tokens.

With ``observations`` (the hub's ``cadastre.observe.Observations``), every attempt is also
recorded as a ``CallObservation`` for the per-minute rollups (outcome, status or failure kind,
latency on the hub's clock, the endpoint with ids replaced). This is the place for it because
it is the only layer that sees every attempt, retries and token requests included, exactly as
the vendor does. A non-2xx answer's body is not read here - the layers above read it (retry
reads every attempt's body; the token endpoint keeps only a head of it) - so its stream is
wrapped to keep the first 4 KiB as they pass, and the call is recorded, with the error's
fingerprint, when the body ends or is closed. A 2xx JSON body's shape is taken where the
gateway parses it anyway (``Gateway.get_json``), not here: parsing a page twice to look at it
would cost more than all the rest.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from cadastre.errors import AddressRefused
from cadastre.gateway.outcome import classify
from cadastre.gateway.records import TRACE
from cadastre.observe import CallObservation, endpoint_of, error_fingerprint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from cadastre.gateway.policy import VendorPolicy
    from cadastre.observe import Metrics, Observations
    from cadastre.ports import Clock

log = logging.getLogger(__name__)


class MeteringTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        next: httpx.AsyncBaseTransport,
        metrics: Metrics | None,
        policy: VendorPolicy,
        connection: str,
        clock: Clock,
        *,
        observations: Observations | None = None,
        tenant: str = "",
    ) -> None:
        self._next = next
        self._policy = policy
        self._connection = connection
        self._clock = clock
        self._observations = observations
        self._tenant = tenant
        self._requests = metrics.counter("cadastre_vendor_requests_total") if metrics else None
        self._seconds = metrics.histogram("cadastre_vendor_request_seconds") if metrics else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = self._clock.monotonic()
        try:
            response = await self._next.handle_async_request(request)
        except Exception as error:
            self._record(request, error, started)
            raise
        self._record(request, response, started)
        return response

    def _record(
        self, request: httpx.Request, result: httpx.Response | Exception, started: float
    ) -> None:
        seconds = max(0.0, self._clock.monotonic() - started)
        if isinstance(result, AddressRefused):
            # Refused before a socket was opened: the vendor never saw it, so it is not a vendor
            # request (the call's record and span still say what happened).
            return
        record = request.extensions.get(TRACE)
        if record is not None:
            record.vendor_seconds += seconds
        verdict = classify(result, self._policy, now=self._clock.now())
        vendor = self._policy.vendor
        if self._requests is not None and self._seconds is not None:
            self._requests.labels(vendor, self._connection, verdict.outcome.value).inc()
            self._seconds.labels(vendor, self._connection).observe(seconds)
        log.debug(
            "vendor %s: %s %s -> %s in %.3f s",
            vendor, request.method, request.url.path, verdict.reason, seconds,
            extra={"vendor": vendor, "connection": self._connection,
                   "outcome": verdict.outcome.value},
        )  # fmt: skip
        if self._observations is not None:
            self._observe(request, result, verdict.outcome.value, seconds)

    def _observe(
        self, request: httpx.Request, result: httpx.Response | Exception, outcome: str,
        seconds: float,
    ) -> None:  # fmt: skip
        observations = self._observations
        assert observations is not None  # noqa: S101 - checked by the caller
        status = _status(result)
        call = CallObservation(
            tenant=self._tenant, connection=self._connection, vendor=self._policy.vendor,
            outcome=outcome, status=status, seconds=seconds,
            endpoint=endpoint_of(request.method, request.url.path),
        )  # fmt: skip
        if not isinstance(result, httpx.Response) or result.is_success:
            observations.record(call)
            return
        if result.is_stream_consumed:  # in memory already (a test's transport): read it here
            observations.record(_with_error(call, result.content))
            return
        encoding = result.headers.get("content-encoding", "").strip().lower()

        def ended(head: bytes) -> None:
            observations.record(_with_error(call, _decoded(head, encoding)))

        if isinstance(result.stream, httpx.AsyncByteStream):
            result.stream = _ErrorHead(result.stream, ended)
        else:  # pragma: no cover - an async transport answers with an async stream
            observations.record(call)

    async def aclose(self) -> None:
        await self._next.aclose()


_HEAD = 4096  # what error_fingerprint reads of a body


class _ErrorHead(httpx.AsyncByteStream):
    """A non-2xx body, passed through unchanged; its first bytes are kept and handed to
    ``ended`` once, when the body has been read or closed (whichever comes first)."""

    def __init__(self, stream: httpx.AsyncByteStream, ended: Callable[[bytes], None]) -> None:
        self._stream = stream
        self._head = bytearray()
        self._ended: Callable[[bytes], None] | None = ended

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            if len(self._head) < _HEAD:
                self._head += chunk[: _HEAD - len(self._head)]
            yield chunk
        self._end()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._end()

    def _end(self) -> None:
        ended, self._ended = self._ended, None
        if ended is not None:
            ended(bytes(self._head))


def _decoded(head: bytes, encoding: str) -> bytes | None:
    """The head of a body as sent, inflated when it is gzip or deflate (the start of a
    compressed stream inflates on its own); None for an encoding we cannot read a part of."""
    if encoding in {"", "identity"}:
        return head
    if encoding in {"gzip", "x-gzip", "deflate"}:
        try:
            return zlib.decompressobj(wbits=47).decompress(head, _HEAD)  # 47: gzip or zlib
        except zlib.error:
            return None
    return None


def _with_error(call: CallObservation, body: bytes | None) -> CallObservation:
    return replace(call, error=error_fingerprint(call.status, body))


def _status(result: httpx.Response | Exception) -> str:
    """The status code, or what kind of failure left none."""
    if isinstance(result, httpx.Response):
        return str(result.status_code)
    if isinstance(result, httpx.TimeoutException):
        return "timeout"
    if isinstance(result, httpx.ConnectError | httpx.ProxyError):
        return "connect_error"
    if isinstance(result, httpx.ProtocolError | httpx.DecodingError):
        return "protocol_error"
    if isinstance(result, httpx.NetworkError):  # read/write errors: the peer reset or hung up
        return "reset"
    return "error"
