"""The pipeline's own record of each call: which bulkhead, breaker, buckets and connection pool it
went through and how long it waited at each. Operators read them to see where time went; the
containment tests read them to prove that a call to one vendor never waited on another's.

Every layer notes what it did on the record the gateway puts in ``request.extensions[TRACE]``;
the gateway finishes the record and appends it to the hub's ``CallLog`` (bounded, newest last).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

TRACE = "cadastre.trace"  # request extension holding the CallRecord of the call being made


@dataclass
class CallRecord:
    tenant: str
    vendor: str
    connection: str
    method: str
    path: str  # never the query string: it may carry keys
    pool: str  # which HTTP connection pool the call used (one per gateway)
    started: float  # clock.monotonic()
    seconds: float = 0.0
    attempts: int = 0
    outcome: str = ""  # "success" or the error's class name
    bulkhead: str | None = None  # the vendor whose bulkhead the call queued in
    bulkhead_wait: float = 0.0
    breaker: str | None = None  # "<tenant>/<connection>" of the breaker consulted
    breaker_refused: bool = False
    rate_buckets: tuple[str, ...] = ()
    rate_wait: float = 0.0
    vendor_seconds: float = 0.0  # inside HTTP, until each attempt's response headers arrived
    notes: list[str] = field(default_factory=list)


class CallLog:
    def __init__(self, size: int = 10_000) -> None:
        self._records: deque[CallRecord] = deque(maxlen=size)

    def append(self, record: CallRecord) -> None:
        self._records.append(record)

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def of(self, *, vendor: str | None = None, tenant: str | None = None) -> list[CallRecord]:
        return [
            r
            for r in self._records
            if (vendor is None or r.vendor == vendor) and (tenant is None or r.tenant == tenant)
        ]

    def clear(self) -> None:
        self._records.clear()
