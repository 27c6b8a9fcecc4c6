"""Per-object logs: numbered lines in an in-memory ring buffer and in size-rotated files.

Every line gets the next sequence number. The ring holds the latest lines (bounded by count
and bytes) for tails and live followers; the files hold every line with the same numbers, so
a follower that fell out of the ring resumes from disk without a gap or a repeat.

Lines arrive in batches (one per pipe read) and are kept as batches: the reader that drains a
child's pipe does one append per read, not one per line, so a fast child is never held up.

File format, one line each: `<seq> <ts> <stream> <text>`. Rotation as supervisord's: when
`<id>.log` passes `file_max_bytes` it becomes `<id>.log.1` (older ones shift up, the oldest
beyond `file_backups` is dropped); sequence numbers carry on across rotations and restarts.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

from .ids import utc_now

log = logging.getLogger(__name__)
READ_BATCH = 2000  # lines handed to a follower at a time


class LogLine:
    """One numbered line. `wire` holds its encoding for senders, made by the first one that
    sends it and shared by all others (a hundred followers of a fast log would otherwise
    encode each line a hundred times)."""

    __slots__ = ("seq", "ts", "stream", "line", "wire")

    def __init__(self, seq: int, ts: str, stream: str, line: str) -> None:
        self.seq, self.ts, self.stream, self.line = seq, ts, stream, line
        self.wire: bytes | None = None

    def to_json(self) -> dict:
        return {"seq": self.seq, "ts": self.ts, "stream": self.stream, "line": self.line}


@dataclass(slots=True)
class Batch:
    """Lines read from one stream at one moment: numbered first, first + 1, ..."""

    first: int
    ts: str
    stream: str
    lines: list[str]
    size: int
    entries: list[LogLine] | None = None  # made on the first read, then shared by all readers

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1

    def after(self, seq: int) -> list[LogLine]:
        if self.entries is None:
            self.entries = [LogLine(self.first + i, self.ts, self.stream, line) for i, line in enumerate(self.lines)]
        return self.entries[max(0, seq + 1 - self.first):]


@dataclass(frozen=True, slots=True)
class StateNote:
    """A state change of the log's owner, placed between the lines around it."""

    after_seq: int
    state: str
    exit_code: int | None


def _parse(raw: str) -> LogLine | None:
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return LogLine(int(parts[0]), parts[1], parts[2], parts[3] if len(parts) == 4 else "")


def _last_seq(path: Path) -> int:
    """The sequence number of the last complete line of a log file (0 when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return 0
    for raw in reversed(tail):
        entry = _parse(raw)
        if entry:
            return entry.seq
    return 0


class Log:
    """One object's output, appended by its pipe readers, read by tails and followers."""

    def __init__(self, path: Path, ring_lines: int, ring_bytes: int, file_max_bytes: int, file_backups: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_max_bytes, self._file_backups = file_max_bytes, file_backups
        self.last_seq = max((_last_seq(p) for p in self.files()), default=0)
        self._open()
        self._unwritten: list[bytes] = []  # lines not yet on disk (a full disk keeps them here)
        self._unwritten_bytes = 0
        self._disk_error: str | None = None
        self._ring: collections.deque[Batch] = collections.deque()
        self._ring_lines = self._ring_bytes = 0
        self._max_lines, self._max_bytes = ring_lines, ring_bytes
        self._changed = asyncio.Event()
        self.notes: list[StateNote] = []

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        backups = [self._backup(n) for n in range(self._file_backups, 0, -1)]
        return [p for p in backups if p.exists()] + ([self.path] if self.path.exists() else [])

    def append(self, stream: str, lines: list[str]) -> None:
        """Number and keep a batch of lines; followers are woken by `flush`."""
        if not lines:
            return
        batch = Batch(self.last_seq + 1, utc_now(), stream, lines, sum(map(len, lines)))
        self.last_seq = batch.last
        self._ring.append(batch)
        self._ring_lines += len(lines)
        self._ring_bytes += batch.size
        while len(self._ring) > 1 and (self._ring_lines > self._max_lines or self._ring_bytes > self._max_bytes):
            dropped = self._ring.popleft()
            self._ring_lines -= len(dropped.lines)
            self._ring_bytes -= dropped.size
        prefix = f" {batch.ts} {stream} "
        data = "".join(f"{batch.first + i}{prefix}{line}\n" for i, line in enumerate(lines)).encode()
        self._unwritten.append(data)
        self._unwritten_bytes += len(data)
        # A disk that stays full must not grow memory without end: drop the oldest unwritten.
        while self._unwritten_bytes > self._max_bytes and len(self._unwritten) > 1:
            self._unwritten_bytes -= len(self._unwritten.pop(0))

    def flush(self) -> None:
        """Write pending lines to disk, rotate if due, and wake followers."""
        self._write_unwritten()
        if self._file_size > self._file_max_bytes:
            self._rotate()
        self._wake()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._file_size = os.fstat(self._fd).st_size

    def _write_unwritten(self) -> None:
        if not self._unwritten:
            return
        data = memoryview(b"".join(self._unwritten))
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            if self._disk_error is None:
                log.error("log %s: cannot write (%s); keeping lines in memory until it can", self.path, exc)
            self._disk_error = str(exc)
        else:
            self._disk_error = None
        self._file_size += written
        rest = bytes(data[written:])
        self._unwritten = [rest] if rest else []
        self._unwritten_bytes = len(rest)

    def note_state(self, state: str, exit_code: int | None) -> None:
        self.notes.append(StateNote(self.last_seq, state, exit_code))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        os.close(self._fd)
        if self._file_backups:
            self._backup(self._file_backups).unlink(missing_ok=True)
            for n in range(self._file_backups - 1, 0, -1):
                if self._backup(n).exists():
                    os.replace(self._backup(n), self._backup(n + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink()
        self._open()

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next append or state note; take it before reading to miss no wake-up."""
        return self._changed

    def tail(self, n: int) -> list[LogLine]:
        return self._from_ring(self.last_seq - n, n) if n > 0 else []

    def _from_ring(self, seq: int, limit: int) -> list[LogLine]:
        out: list[LogLine] = []
        for batch in reversed(self._ring):  # newest first: a live follower wants the end
            if batch.last <= seq:
                break
            out[:0] = batch.after(seq)
        return out[:limit]

    def _read_files(self, seq: int, limit: int) -> list[LogLine]:
        out: list[LogLine] = []
        for path in self.files():
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for raw in f:
                        entry = _parse(raw)
                        if entry and entry.seq > seq:
                            out.append(entry)
                            if len(out) >= limit:
                                return out
            except FileNotFoundError:  # rotated away while reading: the next file has the rest
                continue
        return out

    async def read_after(self, seq: int, limit: int = READ_BATCH) -> list[LogLine]:
        """Up to `limit` lines after `seq`: from the ring when it still holds the next one,
        else from the files (read in a thread, so a catching-up follower never stalls others)."""
        if seq >= self.last_seq:
            return []
        if self._ring and self._ring[0].first <= seq + 1:
            return self._from_ring(seq, limit)
        self._write_unwritten()
        return await asyncio.to_thread(self._read_files, seq, limit)

    def close(self) -> None:
        self.flush()
        os.close(self._fd)

    def remove(self) -> None:
        os.close(self._fd)
        for path in self.files():
            path.unlink(missing_ok=True)


async def follow(log: Log, after: int, keep_following: bool, finished: Callable[[], bool],
                 resuming: bool = False) -> AsyncIterator[list[LogLine | StateNote]]:
    """Every line after `after` and every state change since, in order and in batches,
    until the owner has finished and every line was given (or, not following, once the
    backlog is given). A reader `resuming` after line `after` has seen the state changes
    that came right after it, so those are not given again."""
    first_note = bisect.bisect_right if resuming else bisect.bisect_left
    notes_seen = first_note(log.notes, after, key=lambda note: note.after_seq)
    while True:
        changed = log.changed
        lines = await log.read_after(after)
        batch: list[LogLine | StateNote] = []
        for entry in lines:
            while notes_seen < len(log.notes) and log.notes[notes_seen].after_seq < entry.seq:
                batch.append(log.notes[notes_seen])
                notes_seen += 1
            batch.append(entry)
            after = entry.seq
        while notes_seen < len(log.notes) and log.notes[notes_seen].after_seq <= after:
            batch.append(log.notes[notes_seen])
            notes_seen += 1
        if batch:
            yield batch
        if lines:
            continue
        if not keep_following or finished():
            return
        await changed.wait()
