"""The innermost layer above HTTP: count and time every request that actually goes to a vendor.

Sitting at the bottom, it sees each attempt, each credential resend and each token request (the
OAuth2 authenticator sends through it), which is what the vendor's own meter counts too.

- ``cadastre_vendor_requests_total{vendor, connection, outcome}``: ``outcome`` is the
  ``Outcome`` value ``classify`` gives the answer (``success``, ``retry``, ``rate_limited``,
  ``fail``); a 401 counts as ``fail`` here, since the credential mark is added above.
- ``cadastre_vendor_request_seconds{vendor, connection}``: until the response headers arrive
  (the body is read by the layers above, which may stream it).

One debug line per request names the URL path only: query strings may carry keys or tokens.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from cadastre.errors import AddressRefused
from cadastre.gateway.outcome import classify
from cadastre.gateway.records import TRACE

if TYPE_CHECKING:
    from cadastre.gateway.policy import VendorPolicy
    from cadastre.observe import Metrics
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
    ) -> None:
        self._next = next
        self._policy = policy
        self._connection = connection
        self._clock = clock
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

    async def aclose(self) -> None:
        await self._next.aclose()
