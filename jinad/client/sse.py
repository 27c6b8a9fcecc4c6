"""Server-sent events read from an aiohttp response, as the EventSource spec frames them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


async def iter_events(resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Each event of the stream until it closes; comments (pings) are skipped."""
    event, data, event_id = "message", [], None
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield Event(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
