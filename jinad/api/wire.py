"""Encoded bodies kept for senders, so that the hot paths encode once: an object's JSON for
`GET /{kind}/{id}` (polled by dashboards and scripts) and a log batch's SSE frames for every
follower of a fast log. The model holds no HTTP bytes; these are keyed by what it exposes."""

from __future__ import annotations

from typing import Callable

from ..logs import Batch
from ..objects import ObjectManager
from ..records import JObject

FRAMES_MAX_BYTES = 16 * 1024 * 1024  # about four rings' worth: followers of a log are near its end


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


class BatchFrames:
    """The SSE frames of whole log batches (a batch never changes once made), the least
    recently made dropped past FRAMES_MAX_BYTES. The batch is kept beside its frames, so its
    id() names it for as long as it is here."""

    def __init__(self, max_bytes: int = FRAMES_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._frames: dict[int, tuple[Batch, bytes]] = {}
        self._bytes = 0

    def frames(self, batch: Batch, encode: Callable[[Batch], bytes]) -> bytes:
        kept = self._frames.get(id(batch))
        if kept is not None and kept[0] is batch:
            return kept[1]
        data = encode(batch)
        self._frames[id(batch)] = (batch, data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            self._bytes -= len(self._frames.pop(next(iter(self._frames)))[1])
        return data
