"""Idempotency keys of the unified API's own writes: what they may be, what identifies the
request a key was first used for, and the reaper that forgets them after the kept time.

The HTTP side (holding a key while the write runs, storing and replaying its response) is
``cadastre.api.idempotency``; this module holds the rules that need no HTTP, so the hub can run
the reaper and tests can reach the rules without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from cadastre.errors import CadastreError

if TYPE_CHECKING:
    from types import TracebackType

    from cadastre.ports import Clock, Store

log = logging.getLogger("cadastre.api.idempotency")

MIN_KEEP = timedelta(hours=24)
REAP_BATCH = 1000
# 1 to 255 visible ASCII characters (no space, no control character): what Stripe takes, and
# enough for the IETF draft's quoted sf-string form, which is kept verbatim, quotes and all.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def valid_key(value: str) -> bool:
    return _KEY.fullmatch(value) is not None


def fingerprint(method: str, target: str, body: bytes) -> str:
    """sha256 (hex) of the method, the request target (path and query) and the body - as
    canonical JSON (keys sorted, no spaces) when it is JSON, so a client re-serialising the
    same object is the same request; the bytes otherwise."""
    try:
        value = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        canonical = body
    else:
        canonical = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    digest = hashlib.sha256()
    for part in (method.upper().encode(), target.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two splits collide
        digest.update(part)
    return digest.hexdigest()


class IdempotencyReaper:
    """Forgets every tenant's idempotency keys older than ``keep``, every ``every`` on the
    hub's clock (a worker of ``Hub.running``). Keys still held by a running request stay."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        keep: timedelta = MIN_KEEP,
        every: timedelta = timedelta(hours=1),
    ) -> None:
        if keep < MIN_KEEP:
            raise ValueError(f"idempotency keys are kept at least {MIN_KEEP}; got {keep}")
        self._store = store
        self._clock = clock
        self._keep = keep
        self._every = every
        self._task: asyncio.Task[None] | None = None

    async def reap(self) -> int:
        """One pass over every tenant, a bounded transaction at a time; how many keys went."""
        before = self._clock.now() - self._keep
        gone = 0
        for tenant in await self._store.list_tenants():
            while True:
                async with self._store.unit_of_work(tenant.id) as uow:
                    done = await uow.idempotency.reap(before=before, limit=REAP_BATCH)
                    await uow.commit()
                gone += done
                if done < REAP_BATCH:
                    break
        if gone:
            log.info("idempotency keys reaped: %d", gone)
        return gone

    async def _run(self) -> None:
        while True:
            try:
                await self.reap()
            except CadastreError as exc:  # the store is away: the next round tries again
                log.warning("reaping idempotency keys failed: %s", exc)
            except Exception:  # a bug must not stop the hub: logged, tried again next round
                log.exception("reaping idempotency keys failed")
            await self._clock.sleep(self._every.total_seconds())

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="idempotency reaper")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
