"""Per-object logs: numbered lines in an in-memory ring buffer and in size-rotated files.

Every line gets the next sequence number. The ring holds the latest lines (bounded by count
and bytes) for tails and live followers; the files hold every line with the same numbers, so
a follower that fell out of the ring resumes from disk without a gap or a repeat.

Lines arrive in batches (one per pipe read) and are kept as batches: the reader that drains a
child's pipe does one append per read, not one per line, so a fast child is never held up.
Followers are handed pieces of batches, so their work is per batch too. A follower behind the
ring reads the files back in fixed blocks, which the last few followers there share.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, BinaryIO, Callable

from .ids import utc_now

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)
READ_BATCH = 2000  # lines handed to a follower at a time (whole batches: it may be a little more)
REREAD_BYTES = 512 * 1024  # a block of log file, as followers behind the ring read it back
REREAD_KEPT = 4  # blocks read back, kept for the other followers at the same place
REREAD_IDLE_S = 10.0  # kept blocks go when no follower has used them for this long
WAKE_INTERVAL_S = 0.002  # followers are woken at most this often: a fast log wakes them per lot
# ... and a little less often the more there are: each wake-up costs every follower a send
# (most of the daemon's CPU with 100 of them), while the wait it adds is a fraction of a ms.
WAKE_INTERVAL_PER_FOLLOWER_S = 0.00001
LOTS_KEPT = 64  # lots kept per log for the other followers at the same place


class LogLine:
    """One numbered line, as tails and plain-text readers see it."""

    __slots__ = ("seq", "ts", "stream", "line")

    def __init__(self, seq: int, ts: str, stream: str, line: str) -> None:
        self.seq, self.ts, self.stream, self.line = seq, ts, stream, line


@dataclass(slots=True)
class Batch:
    """Lines read from one stream at one moment: numbered first, first + 1, ..."""

    first: int
    ts: str
    stream: str
    lines: list[str]
    size: int

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1


@dataclass(frozen=True, slots=True)
class Piece:
    """Lines `start` to `stop - 1` of a batch: what followers are handed, so that the work
    per follower is per batch, not per line."""

    batch: Batch
    start: int
    stop: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == len(self.batch.lines)

    @property
    def first_seq(self) -> int:
        return self.batch.first + self.start

    @property
    def last_seq(self) -> int:
        return self.batch.first + self.stop - 1

    @property
    def lines(self) -> list[str]:
        return self.batch.lines[self.start:self.stop]

    def entries(self) -> list[LogLine]:
        b = self.batch
        return [LogLine(b.first + i, b.ts, b.stream, b.lines[i]) for i in range(self.start, self.stop)]

    def split(self, seq: int) -> tuple["Piece", "Piece"]:
        """The lines up to `seq` and the lines after it."""
        cut = seq + 1 - self.batch.first
        return Piece(self.batch, self.start, cut), Piece(self.batch, cut, self.stop)


@dataclass(frozen=True, slots=True)
class Lot:
    """What a follower after line `begin` that has seen `notes_begin` state notes is given
    next: built once for every follower at that place (and so encoded once, see api.wire).
    `after` and `notes_seen` are where it leaves the follower."""

    items: list[Piece | StateNote]
    after: int
    notes_seen: int
    lasting: bool  # more lines could not change it (it holds READ_BATCH lines)
    built_at: tuple[int, int]  # the log's last line and note count when it was built


def _pieces_after(batches: list[Batch], seq: int, limit: int) -> list[Piece]:
    """Pieces of consecutive batches holding the lines after `seq`, about `limit` lines."""
    i = bisect.bisect_right(batches, seq, key=lambda b: b.last)
    out: list[Piece] = []
    count = 0
    for batch in batches[i:]:
        if count >= limit:
            break
        piece = Piece(batch, max(0, seq + 1 - batch.first), len(batch.lines))
        out.append(piece)
        count += piece.stop - piece.start
    return out


# Writes a lot to a parked follower's client; False when it did not (a full socket, a client
# going away): the follower's own task then writes it, and waits or ends as it must.
Deliver = Callable[["Lot"], bool]


class Parked:
    """A caught-up follower waiting for the log to move on, without a task wake-up per lot:
    the log's wake-up hands each new lot to `deliver` and moves the follower on, and wakes its
    task only when it has to act itself (a full socket, a backlog, a gone client, its end)."""

    __slots__ = ("after", "notes_seen", "deliver", "finished", "woken")

    def __init__(self, after: int, notes_seen: int, deliver: Deliver, finished: Callable[[], bool]) -> None:
        self.after, self.notes_seen = after, notes_seen
        self.deliver, self.finished = deliver, finished
        self.woken = asyncio.get_running_loop().create_future()


@dataclass(frozen=True, slots=True)
class StateNote:
    """A state change of the log's owner, placed between the lines around it."""

    after_seq: int
    state: str
    exit_code: int | None
    ts: str


def _parse(raw: str) -> LogLine | None:
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return LogLine(int(parts[0]), parts[1], parts[2], parts[3] if len(parts) == 4 else "")


def _first_line(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.readline()
    except FileNotFoundError:
        return b""


def _first_seq(path: Path) -> int:
    """The sequence number of a log file's first line (0 when it has none)."""
    entry = _parse(_first_line(path).decode("utf-8", "replace"))
    return entry.seq if entry else 0


def _tail_lines(path: Path) -> list[LogLine]:
    """The complete lines in the last 64 KiB of a log file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            start = max(0, f.tell() - 65536)
            f.seek(start)
            tail = f.read().decode("utf-8", "replace").split("\n")
    except FileNotFoundError:
        return []
    return [entry for raw in tail[1 if start else 0:-1] if (entry := _parse(raw))]


def _drop_torn_line(path: Path) -> None:
    """A daemon killed while it wrote lines may leave the file ending in part of one: cut it
    off, so the file holds whole lines and the next line starts a line of its own (the child's
    bytes it came from are taken again: see supervision._PipeToLog)."""
    try:
        with open(path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            cut = end
            while cut > 0:
                start = max(0, cut - 65536)
                f.seek(start)
                block = f.read(cut - start)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    cut = start + newline + 1
                    break
                cut = start
            if cut < end:
                log.warning("log %s ended in part of a line (%d bytes); cut off", path, end - cut)
                f.truncate(cut)
    except FileNotFoundError:
        pass


def _last_seq(path: Path) -> int:
    """The sequence number of the last complete line of a log file (0 when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode("utf-8", "replace").split("\n")
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
        _drop_torn_line(path)
        self.last_seq = max((_last_seq(p) for p in self.files()), default=0)
        self._closed = False
        self._open()
        self._unwritten: list[bytes] = []  # lines not yet on disk (a full disk keeps them here)
        self._unwritten_bytes = 0
        self._disk_error: str | None = None
        self._ring: collections.deque[Batch] = collections.deque()
        self._ring_lines = self._ring_bytes = 0
        self._max_lines, self._max_bytes = ring_lines, ring_bytes
        self._changed = asyncio.Event()
        self._last_wake = float("-inf")
        self._wake_timer: asyncio.TimerHandle | None = None
        self._reread: collections.deque[list[Batch]] = collections.deque(maxlen=REREAD_KEPT)
        self._reread_used = 0.0
        self._lots: dict[tuple[int, int], Lot] = {}
        self.notes: list[StateNote] = []
        self.followers = 0  # streams reading it now (`follow`), for the daemon's metrics
        self.parked: set[Parked] = set()
        # A Flow's part copies its lines into the Flow's log, each led by this mark (see parts.py).
        self.copy_to: tuple[Log, str] | None = None

    @classmethod
    def from_config(cls, config: Config, name: str) -> Log:
        """The log `name` in the daemon's logs folder, kept as the settings say."""
        c = config
        return cls(c.home / "logs" / f"{name}.log", c.log_ring_lines, c.log_ring_bytes, c.log_file_max_bytes, c.log_file_backups)

    def last_line_of(self, stream: str) -> int | None:
        """The number of the last line of `stream` near the end of the file (None if none there)."""
        self._write_unwritten()
        return next((entry.seq for entry in reversed(_tail_lines(self.path)) if entry.stream == stream), None)

    def count_after(self, stream: str, seq: int, scan_bytes: int = 8 << 20) -> int:
        """How many lines of `stream` the file holds after line `seq` (read back from its end,
        at most `scan_bytes`: what one daemon's read can have added)."""
        self._write_unwritten()
        try:
            with open(self.path, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                start = max(0, end - scan_bytes)
                f.seek(start)
                rows = f.read().split(b"\n")
        except FileNotFoundError:
            return 0
        count = 0
        for raw in reversed(rows[1 if start else 0:]):
            entry = _parse(raw.decode("utf-8", "replace"))
            if entry is None:
                continue
            if entry.seq <= seq:
                break
            count += entry.stream == stream
        return count

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        backups = [self._backup(n) for n in range(self._file_backups, 0, -1)]
        return [p for p in backups if p.exists()] + ([self.path] if self.path.exists() else [])

    def append(self, stream: str, lines: list[str]) -> None:
        """Number and keep a batch of lines; followers are woken by `flush`."""
        if not lines:
            return
        if self.copy_to is not None:
            sink, mark = self.copy_to
            sink.append(stream, [mark + line for line in lines])
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
        try:
            if self._closed:
                return
            if self._fd < 0:  # a rotation could not open the new file: try again
                self._open()
            self._write_unwritten()
            # Not with lines unwritten: the new file would start in the middle of one.
            if self._file_size > self._file_max_bytes and not self._unwritten:
                self._rotate()
        except OSError as exc:
            self._note_disk_error(exc)
        finally:
            self.wake()
            if self.copy_to is not None:
                self.copy_to[0].flush()

    def _close_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1  # a late line must not go to whatever file gets this number next

    def _note_disk_error(self, exc: OSError) -> None:
        if self._disk_error is None:
            log.error("log %s: cannot write (%s); keeping lines in memory until it can", self.path, exc)
        self._disk_error = str(exc)

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._file_size = os.fstat(self._fd).st_size

    def _write_unwritten(self) -> None:
        if not self._unwritten or self._fd < 0:
            return
        data = memoryview(b"".join(self._unwritten))
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self._note_disk_error(exc)
        else:
            self._disk_error = None
        self._file_size += written
        rest = bytes(data[written:])
        self._unwritten = [rest] if rest else []
        self._unwritten_bytes = len(rest)

    def note_state(self, state: str, exit_code: int | None) -> None:
        self.notes.append(StateNote(self.last_seq, state, exit_code, utc_now()))
        self.wake()

    def wake(self) -> None:
        """Wake followers now, or WAKE_INTERVAL_S after the last time: a child printing
        thousands of lines a second then costs each follower one wake-up per lot of lines."""
        if self._wake_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_wake + WAKE_INTERVAL_S + self.followers * WAKE_INTERVAL_PER_FOLLOWER_S - loop.time()
        if delay > 0:
            self._wake_timer = loop.call_later(delay, self._wake_now)
        else:
            self._wake_now()

    def _wake_now(self) -> None:
        self._wake_timer = None
        self._last_wake = asyncio.get_running_loop().time()
        if self.parked:
            self._fan_out()
        self._changed.set()
        self._changed = asyncio.Event()

    def _fan_out(self) -> None:
        """Each parked follower's next lot written to its client here, one call each; a
        follower that has to act itself is unparked and its task woken."""
        for parked in list(self.parked):
            lot = self.lot_after(parked.after, parked.notes_seen)
            if lot is not None:
                if parked.deliver(lot):
                    parked.after, parked.notes_seen = lot.after, lot.notes_seen
                    behind = lot.after < self.last_seq or lot.notes_seen < len(self.notes)
                    if not behind and not parked.finished():
                        continue
            elif not parked.finished():
                continue
            self.parked.discard(parked)
            if not parked.woken.done():  # not cancelled meanwhile (its client went away)
                parked.woken.set_result(None)

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        self._close_file()
        try:
            if self._file_backups:
                self._backup(self._file_backups).unlink(missing_ok=True)
                for n in range(self._file_backups - 1, 0, -1):
                    if self._backup(n).exists():
                        os.replace(self._backup(n), self._backup(n + 1))
                os.replace(self.path, self._backup(1))
            else:
                self.path.unlink()
        finally:  # renamed or not, lines go on to <id>.log
            self._open()

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next flush or state note (within WAKE_INTERVAL_S); take it before
        reading to miss no wake-up."""
        return self._changed

    def tail(self, n: int) -> list[LogLine]:
        if n <= 0:
            return []
        return [entry for piece in self._from_ring(self.last_seq - n, n) for entry in piece.entries()][-n:]

    def _from_ring(self, seq: int, limit: int) -> list[Piece]:
        newer: list[Batch] = []
        for batch in reversed(self._ring):  # newest first: a live follower wants the end
            if batch.last <= seq:
                break
            newer.append(batch)
        newer.reverse()
        return _pieces_after(newer, seq, limit)

    def read_after(self, seq: int, limit: int = READ_BATCH) -> list[Piece]:
        """About `limit` lines after `seq`: from the ring when it still holds the next one,
        else from the files. Files are read a bounded chunk at a time, found by bisection, and
        the chunk is kept for the other followers at the same place."""
        if seq >= self.last_seq:
            return []
        if self._ring and self._ring[0].first <= seq + 1:
            return self._from_ring(seq, limit)
        self._reread_used = time.monotonic()
        for chunk in self._reread:
            if chunk[0].first <= seq + 1 <= chunk[-1].last:
                # Kept as used last, for the follower behind this one (see KeptBytes).
                self._reread.remove(chunk)
                self._reread.append(chunk)
                return _pieces_after(chunk, seq, limit)
        self._write_unwritten()
        chunk = self._read_files(seq)
        if not chunk:  # lines a full disk kept from the files: on with what the ring holds
            return self._from_ring(seq, limit)
        self._reread.append(chunk)
        return _pieces_after(chunk, seq, limit)

    def lot_after(self, after: int, notes_seen: int) -> Lot | None:
        """The lines after `after` (about READ_BATCH) with the state notes among and right
        after them, from note `notes_seen` on; None when there is nothing new. Kept for the
        other followers at the same place while it is what they would be given."""
        key = (after, notes_seen)
        kept = self._lots.get(key)
        if kept is not None and (kept.lasting or kept.built_at == (self.last_seq, len(self.notes))):
            return kept
        notes = self.notes
        pieces = self.read_after(after)
        items: list[Piece | StateNote] = []
        for piece in pieces:
            while notes_seen < len(notes) and notes[notes_seen].after_seq < piece.last_seq:
                note = notes[notes_seen]
                if note.after_seq >= piece.first_seq:  # it came between two lines of the piece
                    head, piece = piece.split(note.after_seq)
                    items.append(head)
                items.append(note)
                notes_seen += 1
            items.append(piece)
            after = piece.last_seq
        while notes_seen < len(notes) and notes[notes_seen].after_seq <= after:
            items.append(notes[notes_seen])
            notes_seen += 1
        if not items:
            return None
        lasting = sum(piece.stop - piece.start for piece in pieces) >= READ_BATCH
        lot = self._lots[key] = Lot(items, after, notes_seen, lasting, (self.last_seq, len(notes)))
        if len(self._lots) > LOTS_KEPT:
            del self._lots[next(iter(self._lots))]
        return lot

    def seq_before(self, ts: str) -> int:
        """The number of the last line written before time `ts` (RFC 3339 UTC with
        milliseconds, as lines carry it): the lines after it are those at or after `ts`.
        Lines are in time order, so this is a bisection of the ring, else of the files."""
        if self._ring and self._ring[0].ts < ts:
            i = bisect.bisect_left(self._ring, ts, key=lambda batch: batch.ts)
            return self._ring[i].first - 1 if i < len(self._ring) else self.last_seq
        self._write_unwritten()
        before = _before_time(ts.encode())
        older = [path for path in self.files() if before(_first_line(path))]
        if not older:
            return 0  # every line kept is at or after it
        path = older[-1]  # the last file that starts before it holds the place
        try:
            with open(path, "rb") as f:
                f.seek(_offset_of(f, os.fstat(f.fileno()).st_size, before))
                entry = _parse(f.readline().decode("utf-8", "replace"))
        except FileNotFoundError:  # rotated away meanwhile: from the start of what is kept
            return 0
        return entry.seq - 1 if entry else _last_seq(path)

    def tend(self) -> None:
        """Housekeeping: write the lines a full disk kept back, once it takes them again (not
        only when the child next prints), and drop the blocks read back from files once no
        follower has used them for a while."""
        if self._unwritten and not self._closed:
            self.flush()
        if self._reread and time.monotonic() - self._reread_used > REREAD_IDLE_S:
            self._reread.clear()

    def _read_files(self, seq: int) -> list[Batch]:
        """The batches of the block of file that holds the first line after `seq`. Blocks
        are fixed stretches of each file, so followers at nearby places share one."""
        # (first line, file) of files with a line: the current one is empty just after a rotation.
        files = [(first, path) for path in self.files() if (first := _first_seq(path))]
        # The last file that starts at or before the line wanted; later ones if it has no more.
        begin = max(0, bisect.bisect_right(files, seq + 1, key=lambda item: item[0]) - 1)
        for _, path in files[begin:]:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    block = _offset_of(f, size, _before_seq(seq)) // REREAD_BYTES
                    while block * REREAD_BYTES < size:
                        batches = _batches(_read_block(f, block))
                        if batches and batches[-1].last > seq:
                            return batches
                        block += 1
            except FileNotFoundError:  # rotated away meanwhile: the next read finds it renamed
                continue
        return []

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._close_file()

    def remove(self) -> None:
        self._closed = True
        self._close_file()
        self._reread.clear()
        self._lots.clear()
        for path in self.files():
            path.unlink(missing_ok=True)
        self.wake()  # its followers end: their owner is gone


def _before_seq(seq: int) -> Callable[[bytes], bool | None]:
    """Is a raw log line numbered `seq` or lower? (None: not a line.) Reads only its number."""
    def before(raw: bytes) -> bool | None:
        number = raw.split(b" ", 1)[0]
        return int(number) <= seq if number.isdigit() else None

    return before


def _before_time(ts: bytes) -> Callable[[bytes], bool | None]:
    """Was a raw log line written before time `ts`? (None: not a line.) Times in the files are
    all RFC 3339 UTC with milliseconds, so they compare as bytes."""
    def before(raw: bytes) -> bool | None:
        parts = raw.split(b" ", 2)
        return parts[1] < ts if len(parts) == 3 and parts[0].isdigit() else None

    return before


def _offset_of(f: BinaryIO, size: int, before: Callable[[bytes], bool | None]) -> int:
    """Where the first line that is not `before` the place wanted starts (lines are in order:
    by number and by time), or about there when a line cannot be read."""
    low, high = 0, size
    while high - low > REREAD_BYTES // 4:
        middle = (low + high) // 2
        f.seek(middle)
        f.readline()  # the rest of the line `middle` falls in
        start = f.tell()
        is_before = before(f.readline())
        if is_before is None or start >= high:
            break
        if is_before:
            low = start
        else:
            high = start
    # On to the line itself: the block it starts in is the one to read, not the block before
    # (which a follower has just finished).
    f.seek(low)
    end = min(high, low + REREAD_BYTES)  # bounded, should a line have been unreadable
    while low < end and (raw := f.readline()):
        if before(raw) is False:
            break
        low += len(raw)
    return low


def _read_block(f: BinaryIO, block: int) -> bytes:
    """The whole lines that start in a block (REREAD_BYTES) of a log file."""
    start = block * REREAD_BYTES
    f.seek(max(0, start - 1))
    if start:
        f.readline()  # to the first line that starts in this block
    data = f.read(max(0, start + REREAD_BYTES - f.tell()))
    if data and not data.endswith(b"\n"):
        data += f.readline()  # the last line runs on past the block's end
    return data[:data.rfind(b"\n") + 1]


def _batches(data: bytes) -> list[Batch]:
    """Whole lines of a log file regrouped into batches (runs of lines with the same time and
    stream). Inline, not `_parse` per line: followers behind the ring read every line of a
    fast log back this way."""
    batches: list[Batch] = []
    lines: list[str] = []
    expected, ts, stream = -1, None, None  # the run being gathered: its next number, time, stream
    for raw in data.decode("utf-8", "replace").split("\n"):
        parts = raw.split(" ", 3)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        number = int(parts[0])
        if number != expected or parts[1] != ts or parts[2] != stream:
            lines = []
            ts, stream = parts[1], parts[2]
            batches.append(Batch(number, ts, stream, lines, 0))
        lines.append(parts[3] if len(parts) == 4 else "")
        expected = number + 1
    for batch in batches:
        batch.size = sum(map(len, batch.lines))
    return batches


def _in_window(lot: list[Piece | StateNote], since: str | None, until: str | None) -> tuple[list[Piece | StateNote], bool]:
    """What of a lot is from `since` to `until` (RFC 3339 UTC, both included), and whether it
    went past `until` (nothing later can be in the window: lines come in time order)."""
    kept = []
    for item in lot:
        ts = item.batch.ts if isinstance(item, Piece) else item.ts
        if until is not None and ts > until:
            return kept, True
        if since is None or ts >= since:
            kept.append(item)
    return kept, False


async def follow(log: Log, after: int, keep_following: bool, finished: Callable[[], bool], resuming: bool = False,
                 since: str | None = None, until: str | None = None, stop_at: float | None = None,
                 deliver: Deliver | None = None) -> AsyncIterator[list[Piece | StateNote]]:
    """Every line after `after` and every state change since, in order and in lots,
    until the owner has finished and every line was given (or, not following, once the
    backlog is given). A reader `resuming` after line `after` has seen the state changes
    that came right after it, so those are not given again. With a time window (`since`,
    `until`, as lines carry their time) only what is in it; following ends at `stop_at`
    (the loop's clock), when `until` comes. With `deliver` (and no window), a caught-up
    follower is parked: the lots that come while it waits go to `deliver`, not through here."""
    first_note = bisect.bisect_right if resuming else bisect.bisect_left
    notes_seen = first_note(log.notes, after, key=lambda note: note.after_seq)
    windowed = since is not None or until is not None
    loop = asyncio.get_running_loop()
    log.followers += 1
    try:
        while True:
            changed = log.changed
            lot = log.lot_after(after, notes_seen)
            if lot is not None:
                after, notes_seen = lot.after, lot.notes_seen
                items, past = _in_window(lot.items, since, until) if windowed else (lot.items, False)
                if items:
                    yield items
                if past:
                    return
                if after < log.last_seq or notes_seen < len(log.notes):
                    # Let the loop run between lots: a socket that takes all it is given never
                    # makes a sender wait, and a follower catching up would otherwise keep the
                    # loop from draining the children's pipes.
                    await asyncio.sleep(0)
                    continue
            if not keep_following or finished():
                return
            if deliver is not None and not windowed and stop_at is None:
                parked = Parked(after, notes_seen, deliver, finished)
                log.parked.add(parked)
                try:
                    await parked.woken
                finally:
                    log.parked.discard(parked)
                after, notes_seen = parked.after, parked.notes_seen
            elif stop_at is None:
                await changed.wait()
            elif loop.time() >= stop_at:
                return
            else:
                waiting = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait({waiting}, timeout=stop_at - loop.time())
                finally:
                    waiting.cancel()
    finally:
        log.followers -= 1
