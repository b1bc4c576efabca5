"""``DeliverySender``: the worker that sends due deliveries, signed, and decides what each answer
means for the delivery and its subscription.

It claims due deliveries (``uow.deliveries.claim``: two senders, in one process or many, never
attempt one delivery), signs each per Standard Webhooks, POSTs it through the subscription's
gateway, and records the attempt with the delivery's next state in one transaction:

| answer | the delivery | its subscription |
|---|---|---|
| 2xx | delivered | failure clock stopped |
| 410 Gone | retried on the schedule, held while disabled | disabled at once, alert |
| 429 | retried, no sooner than ``Retry-After`` | failure clock runs |
| anything else | retried on the schedule | failure clock runs |
| a failure after the last step | dead, alert | |

"Anything else" is a 3xx (never followed), another 4xx, a 5xx, a timeout, a refused address or
a connection that failed.

A subscription whose attempts have all failed for ``disable_after`` (5 days) is disabled with an
alert; one success in between stops the clock (Svix's rule). Everything is on the hub's clock,
but a request's own timeout, which is the network's real time.

It runs as an async context manager (``Hub.running``), woken at once when the dispatcher adds
deliveries (``nudge``) and polling otherwise, for retries coming due and for deliveries another
process added. Attempts run as tasks of their own (``parallel`` at most), so an endpoint that
hangs for its whole timeout holds one slot, not the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Self, assert_never

from cadastre import failpoints
from cadastre.errors import AddressRefused, CadastreError, CredentialError, VendorError
from cadastre.ports import (
    DeliveryAttempt,
    DeliveryStatus,
    EndpointReply,
    SubscriptionStatus,
)
from cadastre.webhooks.out_events import dead_alert, disabled_alert
from cadastre.webhooks.schedule import RetrySchedule
from cadastre.webhooks.standard import signature_header

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime
    from types import TracebackType

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, Delivery, Store, Subscription
    from cadastre.webhooks.out_gateways import SubscriberGateways
    from cadastre.webhooks.out_signing import SigningKeys

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024  # bytes of an endpoint's answer read; the status is what matters
PRUNE_BATCH = 1000  # deliveries deleted per transaction
ACTOR = "webhooks-out"


class Verdict(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    status: int | None  # None: no answer at all
    error: str = ""
    retry_after: float | None = None


def judge(reply: EndpointReply) -> Answer:
    """Classify an endpoint's answer (Svix's rules: only a 2xx is a success)."""
    status = reply.status
    if 200 <= status < 300:
        return Answer(Verdict.DELIVERED, status)
    if status == 410:
        return Answer(Verdict.GONE, status, "410 Gone: the endpoint says it is no more")
    if status == 429:
        return Answer(Verdict.RATE_LIMITED, status, "429 Too Many Requests", reply.retry_after)
    if 300 <= status < 400:
        return Answer(Verdict.FAILED, status, f"{status} redirect, not followed")
    return Answer(Verdict.FAILED, status, f"HTTP {status}")


class DeliverySender:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        keys: SigningKeys,
        gateways: SubscriberGateways,
        *,
        schedule: RetrySchedule | None = None,
        disable_after: timedelta = timedelta(days=5),
        poll: float = 1.0,
        batch: int = 50,
        parallel: int = 32,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        senders: set[DeliverySender] | None = None,
        keep: timedelta | None = timedelta(days=30),
        prune_every: timedelta = timedelta(hours=1),
    ) -> None:
        """``parallel``: attempts in flight at most (claimed and not yet recorded); ``batch``:
        deliveries claimed at once per tenant. ``senders``: where a running sender registers,
        so the dispatcher's nudges reach it. ``keep``: how long deliveries nothing sends again
        (delivered, cancelled, dead of a removed subscription) are kept, pruned every
        ``prune_every`` (None: kept for ever)."""
        self._store = store
        self._clock = clock
        self._keys = keys
        self._gateways = gateways
        self.schedule = schedule or RetrySchedule()
        self._disable_after = disable_after
        self._poll = poll
        self._batch = batch
        self._room = parallel
        self._metrics = metrics
        self._rng = rng or random.SystemRandom()
        self._senders = senders
        self._keep = keep
        self._prune_every = prune_every
        self._pruned_at: datetime | None = None
        self._pruning: asyncio.Task[None] | None = None
        # A claim outlives any attempt (signing, the request, recording it), so it runs out
        # only when its sender died; another sender then takes the delivery over.
        self._lease = timedelta(seconds=gateways.timeout + 60)
        self._wake = asyncio.Event()
        self._everyone = True  # the next pass looks at every tenant, not only nudged ones
        self._nudged: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._idle = False
        # Attempts run as tasks of their own, so an endpoint that hangs for its whole timeout
        # holds one slot, not the sender: the next pass goes on claiming for everyone else.
        self._inflight: set[asyncio.Task[None]] = set()
        self._short: set[str] = set()  # tenants left waiting for a free slot

    # ------------------------------------------------------------------ running

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="webhooks-out sender")
        if self._senders is not None:
            self._senders.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._senders is not None:
            self._senders.discard(self)
        tasks = [t for t in (self._task, self._pruning, *self._inflight) if t is not None]
        for task in tasks:  # an attempt cut short is attempted again once its claim runs out
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._gateways.aclose()

    def nudge(self, tenant: str | None = None) -> None:
        """Deliveries of ``tenant`` (None: of any tenant) may be due now."""
        if tenant is None:
            self._everyone = True
        else:
            self._nudged.add(tenant)
        self._wake.set()

    async def _run(self) -> None:
        again: set[str] = set()  # tenants whose last claim was full: more may be waiting
        while True:
            self._wake.clear()
            tenants = None if self._everyone else self._nudged | again
            self._everyone = False
            self._nudged = set()
            try:
                again = await self._pass(tenants)
            except CadastreError as exc:  # the store is away, say: the next pass tries again
                log.warning("webhook sender pass failed: %s", exc)
                again = set()
            except Exception:  # a bug must not stop deliveries in silence: log it, go on
                log.exception("webhook sender pass failed")
                again = set()
            if tenants is None:  # a pass over every tenant: the time to prune, now and then
                self._prune_if_due()
            self._short = {t for t in again if self._free() <= 0}
            if again and not self._short:
                continue
            if not self._wake.is_set() and not await self._sleep():
                self._everyone = True  # the poll came round: retries may be due anywhere

    @property
    def idle(self) -> bool:
        """No attempt in flight, and waiting for a nudge or the next poll with its timer set: a
        test on a fake clock moves time only then, or the timer would be set from the moved
        time and never come due."""
        return self._idle and not self._inflight

    async def _sleep(self) -> bool:
        """Until nudged (True) or a poll interval on the hub's clock passed (False)."""
        sleeper = asyncio.ensure_future(self._clock.sleep(self._poll))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.sleep(0)  # the timer starts
            self._idle = True
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._idle = False
            for task in (sleeper, waker):
                task.cancel()
        return waker.done() and not waker.cancelled()

    async def run_once(self, tenants: Collection[str] | None = None) -> set[str]:
        """Attempt the deliveries due now (of ``tenants``, None: every tenant) and wait for the
        attempts; the tenants that had more than one claim takes, so more may be waiting."""
        full = await self._pass(tenants)
        while self._inflight:
            await asyncio.wait(set(self._inflight))
        return full

    def _prune_if_due(self) -> None:
        """Start pruning in a task of its own, so a long backlog never holds up the claims."""
        now = self._clock.now()
        if self._keep is None or (self._pruning is not None and not self._pruning.done()):
            return
        if self._pruned_at is not None and now - self._pruned_at < self._prune_every:
            return
        self._pruned_at = now
        self._pruning = asyncio.create_task(self._prune_quietly(), name="webhooks-out prune")

    async def _prune_quietly(self) -> None:
        try:
            await self.prune()
        except CadastreError as exc:  # the store is away: the next round tries again
            log.warning("pruning old webhook deliveries failed: %s", exc)
        except Exception:  # a bug: logged; deliveries go on
            log.exception("pruning old webhook deliveries failed")

    async def prune(self) -> int:
        """Delete the deliveries (and attempts) of every tenant that nothing sends again and
        that are older than ``keep``; how many."""
        if self._keep is None:
            return 0
        before = self._clock.now() - self._keep
        gone = 0
        for tenant in await self._store.list_tenants():
            while True:  # a bounded transaction at a time: a sender is never held up for long
                async with self._store.unit_of_work(tenant.id) as uow:
                    done = await uow.deliveries.prune(before=before, limit=PRUNE_BATCH)
                    await uow.commit()
                gone += done
                if done < PRUNE_BATCH:
                    break
        return gone

    def _free(self) -> int:
        return self._room - len(self._inflight)

    async def _pass(self, tenants: Collection[str] | None) -> set[str]:
        """Claim what is due and start its attempts (without waiting for them)."""
        if tenants is None:
            tenants = [t.id for t in await self._store.list_tenants()]
        full: set[str] = set()
        for tenant in sorted(tenants):
            limit = min(self._batch, self._free())
            if limit <= 0:
                full.add(tenant)
                continue
            # A read first: an idle poll must not take the write lock (SQLite has one, and
            # webhooks coming in queue for it).
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                if not await uow.deliveries.any_due():
                    continue
            holder = secrets.token_hex(8)  # this claim's
            async with self._store.unit_of_work(tenant) as uow:
                claimed = await uow.deliveries.claim(
                    holder=holder, until=self._clock.now() + self._lease, limit=limit
                )
                if not claimed:
                    continue
                subscriptions = {s.id: s for s in await uow.subscriptions.all()}
                await uow.commit()
            await self._gateways.keep(tenant, subscriptions.values())
            self._keys.keep(tenant, {s.credential for s in subscriptions.values()})
            signing: dict[str, asyncio.Task[list[bytes]]] = {}  # one look-up per credential
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(
                    tenant, delivery, subscriptions.get(delivery.subscription), holder, signing
                ))  # fmt: skip
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            if len(claimed) >= limit:
                full.add(tenant)
        return full

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a webhook attempt failed", exc_info=error)
        if self._short:  # a slot is free for a tenant that was left waiting
            self._nudged |= self._short
            self._short = set()
            self._wake.set()

    # ------------------------------------------------------------------ one attempt

    async def _attempt(
        self, tenant: str, delivery: Delivery, subscription: Subscription | None, holder: str,
        signing: dict[str, asyncio.Task[list[bytes]]],
    ) -> None:  # fmt: skip
        if subscription is None:
            return  # removed since the claim: its removal cancelled the delivery
        credential = subscription.credential
        if credential not in signing:
            signing[credential] = asyncio.ensure_future(self._keys.keys(tenant, credential))
        at = self._clock.now()
        started = time.perf_counter()
        try:
            keys = await asyncio.shield(signing[credential])
        except CredentialError as exc:
            answer = Answer(Verdict.FAILED, None, f"cannot sign: {exc}")
        except CadastreError as exc:  # the store is away: nothing was sent; the claim runs out
            log.warning("delivery %s: its signing key cannot be read: %s", delivery.id, exc)
            return
        except Exception as exc:  # a bug: a failed attempt, recorded, not a silent loop
            log.exception("delivery %s: its signing keys could not be read", delivery.id)
            answer = Answer(Verdict.FAILED, None, f"cannot sign: {type(exc).__name__}")
        else:
            answer = await self._post(tenant, subscription, delivery, keys)
            # kill -9 trials: the endpoint has answered (2xx, perhaps) and nothing is recorded
            failpoints.reach("webhooks.out.answered")
        seconds = time.perf_counter() - started
        try:
            await self._record(tenant, subscription, delivery, holder, at, answer, seconds)
        except CadastreError as exc:
            # The claim runs out and another pass attempts it again: at least once.
            log.warning("delivery %s: the attempt could not be recorded: %s", delivery.id, exc)

    async def _post(
        self, tenant: str, subscription: Subscription, delivery: Delivery, keys: list[bytes]
    ) -> Answer:
        body = delivery.body.encode()
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.event_id,  # the event id: stable across every attempt
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, delivery.event_id, timestamp, body),
        }
        timeout = self._gateways.timeout
        try:
            gateway = self._gateways.get(tenant, subscription)
            # The gateway's transport times out each read; this bounds the whole exchange.
            async with asyncio.timeout(timeout + 1):
                reply = await gateway.token_endpoint.send(
                    "POST", subscription.url, content=body, headers=headers, max_body=MAX_ANSWER
                )
        except TimeoutError:
            return Answer(Verdict.FAILED, None, f"no answer within {timeout:g} s")
        except AddressRefused as exc:
            return Answer(Verdict.FAILED, None, f"refused: {exc}")
        except VendorError as exc:
            return Answer(Verdict.FAILED, None, str(exc))
        except Exception as exc:
            # A URL the HTTP client cannot send, a bug: a failed attempt on the schedule (and in
            # the end the dead-letter queue with its alert), not a claim left to run out and be
            # taken again, unrecorded, for ever.
            log.exception("delivery %s could not be attempted", delivery.id)
            return Answer(Verdict.FAILED, None, f"cannot send: {type(exc).__name__}")
        return judge(reply)

    async def _record(
        self, tenant: str, subscription: Subscription, delivery: Delivery, holder: str,
        at: datetime, answer: Answer, seconds: float,
    ) -> None:  # fmt: skip
        number = delivery.attempts + 1
        attempt = DeliveryAttempt(
            delivery.id, delivery.redeliveries, number, at, answer.status, answer.error, seconds
        )
        ended = self._clock.now()
        next_at: datetime | None = None
        match answer.verdict:
            case Verdict.DELIVERED:
                status = DeliveryStatus.DELIVERED
            case Verdict.FAILED | Verdict.RATE_LIMITED | Verdict.GONE:
                wait = self.schedule.wait_after(number, self._rng, answer.retry_after)
                status = DeliveryStatus.DEAD if wait is None else DeliveryStatus.PENDING
                if wait is not None:
                    next_at = ended + timedelta(seconds=wait)
            case _:
                assert_never(answer.verdict)
        async with self._store.unit_of_work(tenant) as uow:
            if not await uow.deliveries.finish(
                delivery.id, holder=holder, attempt=attempt, status=status, next_attempt_at=next_at
            ):
                return  # our claim ran out and another sender took it over
            events = []
            if answer.verdict is Verdict.DELIVERED:
                await uow.subscriptions.note_success(subscription.id)
            else:
                since = await uow.subscriptions.note_failure(subscription.id, at)
                reason = self._disable_reason(answer, since, ended)
                if reason is not None:
                    off = await uow.subscriptions.set_status(
                        subscription.id, SubscriptionStatus.DISABLED, reason
                    )
                    if off is not None:  # another sender may have disabled it first
                        events.append(disabled_alert(
                            tenant, off, self._clock.now(), answer.status, answer.error
                        ))  # fmt: skip
                        await uow.audit.append(
                            actor=ACTOR, action="subscription.disabled", entity="Subscription",
                            entity_id=off.id, detail={"reason": reason},
                        )  # fmt: skip
                if status is DeliveryStatus.DEAD:
                    events.append(dead_alert(
                        tenant, subscription, delivery, attempt, since, self._clock.now()
                    ))  # fmt: skip
            await uow.outbox.add_many(events)
            await uow.commit()
        if self._metrics is not None:
            outcome = status.value if status is not DeliveryStatus.PENDING else answer.verdict
            self._metrics.counter("cadastre_webhook_attempts_total").labels(tenant, outcome).inc()

    def _disable_reason(self, answer: Answer, since: datetime | None, now: datetime) -> str | None:
        if answer.verdict is Verdict.GONE:
            return "the endpoint answered 410 Gone"
        if since is not None and now - since >= self._disable_after:
            days = self._disable_after / timedelta(days=1)
            return f"every attempt failed for {days:g} days (since {since.isoformat()})"
        return None
