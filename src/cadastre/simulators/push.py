"""The machinery every vendor simulator's webhook pusher shares: notifications made, then dropped,
duplicated or held on purpose (seeded generators, so a test knows which), ``release(order)`` of
the held ones (``fifo``, ``reverse`` or ``shuffle``), and delivery in tasks, never inside the
call that changed the data: one dispatcher sends each notification's first attempt in the order
they were made, and a notification not answered 2xx is retried by a task of its own after each
wait of its schedule on the simulator clock, counted failed when the schedule runs out.

A vendor's pusher (``Pusher``) says only what is its vendor's: how a notification is signed and
posted (``_request``), its retry schedule (``_waits``, ``_pause``), what an answer means
(``_answered``, ``_unanswered``), and what stops delivery (``_halted``, ``_diverted``).
Written out here, not taken from Cadastre: the simulators import nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import httpx

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.simulators.clock import Clock

ORDERS = ("fifo", "reverse", "shuffle")


@dataclass
class PushStats:
    sent: int = 0  # notifications a receiver answered 2xx
    dropped: int = 0  # never sent, on purpose (drop_rate)
    failed: int = 0  # not answered 2xx by the last attempt of the schedule
    retried: int = 0  # attempts after a notification's first
    duplicated: int = 0  # copies made (duplicate_rate)
    attempts: int = 0  # every POST made, answered or not


class Counters(Protocol):
    """What the shared machinery counts (``PushStats``, or a vendor's own in its own order)."""

    sent: int
    dropped: int
    failed: int
    retried: int
    duplicated: int
    attempts: int


class PushSettings(Protocol):
    @property
    def seed(self) -> int: ...
    @property
    def hold(self) -> bool: ...
    @property
    def drop_rate(self) -> float: ...
    @property
    def duplicate_rate(self) -> float: ...
    @property
    def retry_schedule(self) -> tuple[float, ...]: ...


class Pushed(Protocol):
    """A notification: one request (and its retries)."""

    attempts: int
    outcome: Any  # each vendor's own set of outcomes; every one has those written here

    @property
    def settings(self) -> PushSettings: ...


N = TypeVar("N", bound=Pushed)
S = TypeVar("S", bound=PushSettings)


# ------------------------------------------------------------------------- settings checks


def check_url(url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("url is an http:// or https:// URL")


def check_rates(settings: object, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0.0 <= value <= 1.0):  # fmt: skip
            raise ValueError(f"{name} is between 0 and 1")


def check_hold(hold: object) -> None:
    if not isinstance(hold, bool):
        raise ValueError("hold is true or false")


def check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("seed is a whole number")


def check_whole(value: object, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} is a whole number >= {least}")


def check_schedule(schedule: Sequence[object]) -> None:
    if not all(isinstance(s, int | float) and not isinstance(s, bool) and s >= 0
               for s in schedule):  # fmt: skip
        raise ValueError("retry_schedule is a list of seconds >= 0")


def check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError("timeout is seconds > 0")


def settings_values(
    fields: Mapping[str, object], body: Mapping[str, Any], required: tuple[str, str],
    default_schedule: tuple[float, ...],
) -> dict[str, Any]:  # fmt: skip
    """A settings body as the keyword arguments of its settings class (``fields``), its
    ``retry_schedule`` a tuple; unknown or missing fields refused."""
    unknown = set(body) - set(fields)
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    if any(name not in body for name in required):
        raise ValueError(f"{required[0]} and {required[1]} are required")
    values = dict(body)
    schedule = values.get("retry_schedule", default_schedule)
    if not isinstance(schedule, list | tuple):
        raise ValueError("retry_schedule is a list of seconds >= 0")
    values["retry_schedule"] = tuple(schedule)
    return values


def shown_settings(settings: Any, secret: str) -> dict[str, Any]:
    """The settings as an admin API shows them: never the secret."""
    shown: dict[str, Any] = {n: getattr(settings, n) for n in settings.__dataclass_fields__}
    shown[secret] = "***"
    shown["retry_schedule"] = list(settings.retry_schedule)
    return shown


# ----------------------------------------------------------------------------- the pusher


class Pusher(Generic[N, S]):
    """Notifications of one subscription: made by the vendor (``_file``), held, released and
    delivered here. ``_held`` is a plain list: test harnesses hand-pick from it."""

    stats: Counters

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.settings: S | None = None
        self._made: list[N] = []  # every notification made, in order
        self._drops = random.Random(0)  # noqa: S311 - reproducible, not secret
        self._copies = random.Random(1)  # noqa: S311
        self._queue: deque[N] = deque()
        self._held: list[N] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(settings={self.settings!r}, stats={self.stats!r})"

    @property
    def active(self) -> bool:
        return self.settings is not None

    def configure(self, settings: S) -> None:
        """Subscribe (or change the subscription); the generators restart from the seed, so the
        same settings drop the same notifications. Notifications already made keep theirs."""
        self.settings = settings
        self._drops = random.Random(settings.seed)  # noqa: S311
        self._copies = random.Random(settings.seed + 1)  # noqa: S311

    async def stop(self) -> None:
        """Unsubscribe: nothing more is made, and what is waiting or being retried is cancelled."""
        self.settings = None
        tasks = [t for t in (self._dispatcher, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiting in [*self._queue, *self._held]:
            waiting.outcome = "cancelled"
        self._queue.clear()
        self._held.clear()
        self._dispatcher = None
        self._retries.clear()

    # ------------------------------------------------------------------------------ making

    def _copied(self, settings: S) -> bool:
        """Whether this notification is sent twice (drawn once per notification made)."""
        if settings.duplicate_rate and self._copies.random() < settings.duplicate_rate:
            self.stats.duplicated += 1
            return True
        return False

    def _file(self, made: Sequence[N], settings: S) -> None:
        """Each notification made is dropped (drawn per notification, copies too, so a seed fixes
        the pattern), kept back by the vendor (``_diverted``), held, or queued."""
        for note in made:
            self._made.append(note)
            if settings.drop_rate and self._drops.random() < settings.drop_rate:
                note.outcome = "dropped"
                self.stats.dropped += 1
            elif self._diverted(note):
                pass
            elif settings.hold:
                note.outcome = "held"
                self._held.append(note)
            else:
                self._queue.append(note)

    def _diverted(self, note: N) -> bool:
        """Whether the vendor keeps ``note`` from being held or queued (it says its outcome)."""
        return False

    def _form(self) -> None:
        """Make the notifications of what the vendor has gathered (it batches: HubSpot)."""

    def release(self, order: str = "fifo") -> int:
        """Send the held notifications: in the order made, ``reverse``, or ``shuffle`` (seeded).
        Answers how many."""
        if order not in ORDERS:
            raise ValueError(f"order is one of {list(ORDERS)}")
        self._form()
        held, self._held = self._held, []
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            seed = self.settings.seed if self.settings is not None else 0
            random.Random(seed + 2).shuffle(held)  # noqa: S311
        for note in held:
            note.outcome = "pending"
        self._queue.extend(held)
        self._kick()
        return len(held)

    # ----------------------------------------------------------------------------- sending

    def _waiting(self) -> bool:
        return bool(self._queue)

    def _kick(self) -> None:
        if not self._waiting() or (self._dispatcher is not None and not self._dispatcher.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # made outside an event loop: sent when one asks (drain, the next change)
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def drain(self) -> None:
        """Wait until every notification made so far is sent, failed or dropped (held ones stay
        held)."""
        self._kick()
        while True:
            pending = [t for t in (self._dispatcher, *self._retries)
                       if t is not None and not t.done()]  # fmt: skip
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def _dispatch(self) -> None:
        async with httpx.AsyncClient() as client:
            self._form()
            while self._queue:
                note = self._queue.popleft()
                if not self._halted(note):
                    floor = await self._attempt(client, note)
                    if floor is not None:
                        task = asyncio.create_task(self._retry(note, floor))
                        self._retries.add(task)
                        task.add_done_callback(self._retries.discard)
                self._form()

    async def _retry(self, note: N, floor: float) -> None:
        async with httpx.AsyncClient() as client:
            await self._retry_with(client, note, floor)

    async def _retry_with(self, client: httpx.AsyncClient, note: N, floor: float) -> None:
        for wait in self._waits(note):
            await self._pause(note, wait, floor)
            if self._halted(note):
                return
            self.stats.retried += 1
            answer = await self._attempt(client, note)
            if answer is None:
                return
            floor = answer
        note.outcome = "failed"
        self.stats.failed += 1

    def _waits(self, note: N) -> Sequence[float]:
        return note.settings.retry_schedule

    async def _pause(self, note: N, wait: float, floor: float) -> None:
        """Wait before the next attempt; ``floor`` is the least the last answer asked for."""
        await self._clock.sleep(wait)

    def _halted(self, note: N) -> bool:
        """Whether ``note`` is not to be attempted (now or again); the vendor says its outcome."""
        return False

    async def _attempt(self, client: httpx.AsyncClient, note: N) -> float | None:
        """One POST of ``note``: None when done with it (sent, or refused for good), else the
        least wait before the next attempt."""
        note.attempts += 1
        self.stats.attempts += 1
        url, body, headers, timeout = self._request(note)
        try:
            response = await client.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as error:
            return self._unanswered(note, error)
        return self._answered(note, response)

    def _request(self, note: N) -> tuple[str, bytes, dict[str, str], float]:
        """The URL, body, headers (signed) and timeout of an attempt of ``note``."""
        raise NotImplementedError

    def _answered(self, note: N, response: httpx.Response) -> float | None:
        if 200 <= response.status_code < 300:
            self._sent(note)
            return None
        return 0.0

    def _unanswered(self, note: N, error: httpx.HTTPError) -> float | None:
        return 0.0  # no answer: the receiver is down or cut the connection

    def _sent(self, note: N) -> None:
        note.outcome = "sent"
        self.stats.sent += 1
