"""Per-object logs: numbered lines in an in-memory ring buffer and in a JSON-lines file.

Every line gets the next sequence number. The ring buffer holds the latest lines (bounded by
count and bytes) for fast tails and live followers; the file holds every line with the same
numbers, so a reader that fell out of the ring resumes from disk without a gap.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .ids import utc_now


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    ts: str
    stream: str
    line: str

    def to_json(self) -> dict:
        return {"seq": self.seq, "ts": self.ts, "stream": self.stream, "line": self.line}


def _last_seq(path: Path) -> int:
    """The sequence number of the last complete line of a log file (0 when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for raw in reversed(lines):
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


class Log:
    """One object's output, appended by its pipe readers, read by tails and followers."""

    def __init__(self, path: Path, ring_lines: int, ring_bytes: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.last_seq = _last_seq(path)
        self._file = open(path, "a", encoding="utf-8")
        self._ring: collections.deque[LogLine] = collections.deque()
        self._ring_bytes = 0
        self._max_lines = ring_lines
        self._max_bytes = ring_bytes
        self._changed = asyncio.Event()

    def append(self, stream: str, text: str) -> LogLine:
        self.last_seq += 1
        entry = LogLine(self.last_seq, utc_now(), stream, text)
        self._ring.append(entry)
        self._ring_bytes += len(text)
        while len(self._ring) > self._max_lines or self._ring_bytes > self._max_bytes:
            self._ring_bytes -= len(self._ring.popleft().line)
        self._file.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
        return entry

    def flush(self) -> None:
        """Write buffered lines to the file and wake followers; called once per chunk read."""
        self._file.flush()
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_more(self) -> None:
        await self._changed.wait()

    def tail(self, n: int) -> list[LogLine]:
        return list(self._ring)[-n:] if n > 0 else []

    def lines_after(self, seq: int) -> Iterator[LogLine]:
        """Every line after `seq`: from the ring when it still holds them, else from the file."""
        if self._ring and self._ring[0].seq <= seq + 1:
            yield from (entry for entry in list(self._ring) if entry.seq > seq)
            return
        self._file.flush()
        with open(self.path, encoding="utf-8") as f:
            for raw in f:
                try:
                    entry = LogLine(**json.loads(raw))
                except (ValueError, TypeError):
                    continue
                if entry.seq > seq:
                    yield entry

    def close(self) -> None:
        self.flush()
        self._file.close()
