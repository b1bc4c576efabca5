"""``pinned(handler, types)``: a bus handler that reads each event as the major it was written
for. A consumer built for ``cadastre.listing.updated.v1`` keeps working when a newer producer
publishes ``.v2`` (and a v2 consumer reads the v1 the hub emits today): the bus carries every
major of a family under one subject, and this wrapper converts on the way in
(``cadastre.contract.upcast``). Events of families not named pass as they are."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.contract.upcast import by_family, pick

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence

    from cadastre.ports import BusMessage

    Handler = Callable[[Sequence[BusMessage]], Awaitable[None]]


def pinned(handler: Handler, types: Collection[str]) -> Handler:
    """``handler`` fed ``types``' majors; ``UpcastUnavailable`` at once for an unknown type, and
    ``ValueError`` for two majors of one family."""
    wanted = by_family(types)

    async def converted(messages: Sequence[BusMessage]) -> None:
        await handler([replace(m, event=pick(m.event, wanted)) for m in messages])

    return converted
