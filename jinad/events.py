"""Fan-out of state changes to `GET /events` streams: a bounded queue per subscriber, so a
slow one loses events rather than holding up the state machine."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

QUEUE_MAX = 10000


class Broadcast:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()

    def publish(self, event: dict) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict]:
        """Every event published from now on."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_MAX)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
