"""A worker of a durable NATS consumer that takes a batch and never finishes it: it prints
``held <versions>`` and waits, to be killed -9 holding the batch (``test_nats_order``).

    python -m tests.integration.bus.nats_holder NATS_URL CONSUMER SUBJECT ACK_WAIT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from cadastre.bus import NatsJetStreamBus
from cadastre.ports import BusMessage


async def main(url: str, consumer: str, subject: str, ack_wait: float) -> None:
    bus = NatsJetStreamBus(url, ack_wait=ack_wait, fetch_wait=0.2)

    async def hold(messages: Sequence[BusMessage]) -> None:
        versions = " ".join(str(m.event.data["version"]) for m in messages)
        sys.stdout.write(f"held {versions}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()

    await bus.subscribe(consumer, hold, subjects=[subject])
    sys.stdout.write("subscribed\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    url, consumer, subject, ack_wait = sys.argv[1:]
    asyncio.run(main(url, consumer, subject, float(ack_wait)))
