"""Encoded bodies kept for senders, so that the hot paths encode once: an object's JSON for
`GET /{kind}/{id}` (polled by dashboards and scripts) and a log batch's SSE frames for every
follower of a fast log (per batch, and per lot as one HTTP chunk, for all the followers at its
place). The model holds no HTTP bytes; these are keyed by what it exposes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from typing import TypeVar

from ..objects import ObjectManager
from ..records import JObject

T = TypeVar("T")
E = TypeVar("E", bound=Sized)
FRAMES_MAX_BYTES = 16 * 1024 * 1024  # about four rings' worth: followers of a log are near its end
# Lots as HTTP chunks, apart from the batches' frames: followers spread over a flood make a lot
# each, which would otherwise push out the frames they all build their lots from.
CHUNKS_MAX_BYTES = 4 * 1024 * 1024
KEPT_IDLE_S = 10.0  # unasked for this long, kept encodings are dropped (as the log's blocks read back)


class ObjectBodies:
    """Each object's JSON, encoded again once its revision (changes, samples) moves on, or for
    a client that reached the daemon by another host (its address says that host)."""

    def __init__(self) -> None:
        self._bodies: dict[str, tuple[JObject, int, str, bytes]] = {}

    def body(self, objects: ObjectManager, obj: JObject, host: str, encode: Callable[[JObject], bytes]) -> bytes:
        revision = objects.revision_of(obj)
        kept = self._bodies.get(obj.id)
        if kept is not None and kept[0] is obj and kept[1] == revision and kept[2] == host:
            return kept[3]
        if len(self._bodies) > 2 * len(objects.objects) + 64:  # forget deleted objects now and then
            self._bodies = {k: v for k, v in self._bodies.items() if objects.objects.get(k) is v[0]}
        body = encode(obj)
        self._bodies[obj.id] = (obj, revision, host, body)
        return body


class KeptBytes:
    """Encodings of things that never change once made (log batches, lots): bytes, or anything
    whose len() is its size in bytes; the least recently used dropped past `max_bytes`. The
    thing is kept beside its encoding, so its id() names it for as long as it is here."""

    def __init__(self, max_bytes: int = FRAMES_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: dict[int, tuple[object, Sized]] = {}
        self._bytes = 0
        self._used = time.monotonic()

    def tend(self) -> None:
        """Housekeeping: forget everything once nobody has asked for a while. A flood's followers
        leave up to `max_bytes` (and the things kept with it) that an idle daemon would hold for
        good (RSS 43 MB fresh, ~100 MB after one read of a long log)."""
        if self._kept and time.monotonic() - self._used > KEPT_IDLE_S:
            self._kept.clear()
            self._bytes = 0

    def get(self, thing: T, encode: Callable[[T], E]) -> E:
        self._used = time.monotonic()
        kept = self._kept.pop(id(thing), None)
        if kept is not None:  # (it holds the thing: no other can have its id meanwhile)
            # Kept as used last: a follower behind the others finds what they just used. With
            # the least recently made dropped first, one far enough behind encoded all anew,
            # which put it further behind (a flood to 10 followers: 0.13 -> 0.4 µs a line).
            self._kept[id(thing)] = kept
            return kept[1]
        data = encode(thing)
        self._kept[id(thing)] = (thing, data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            self._bytes -= len(self._kept.pop(next(iter(self._kept)))[1])
        return data
