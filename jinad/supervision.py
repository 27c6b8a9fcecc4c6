"""Child processes: spawning in their own process group, draining their pipes, probing
readiness, and stopping the whole tree (signal the group, wait, kill the group, check).

Every child carries two environment markers, JINAD_OBJECT_ID and JINAD_HOME, so a daemon that
starts after a crash can find what its previous run left behind, and no other daemon's.

Live restore: every child runs under a keeper, a `/bin/sh` (dash: ~1.7 MB RSS, no Python, no
jina) that is its parent. The keeper holds a read end of each of the child's pipes, so the
child never gets EPIPE while no daemon reads them (it blocks once a pipe is full, which a
daemon that comes back ends by reading on); it reaps the child and writes its exit code to
`<home>/run/<id>/keeper.<keeper pid>.exit`; it stays until a daemon has read the pipes to
their end (`.released`). A daemon that starts finds keepers by their command line, checks the
child (pid, parent, start time, markers), opens the same pipes again through
`/proc/<keeper>/fd/3` and `/fd/4`, and reads on where the last daemon stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping, Sequence

import aiohttp

from .lazy import LazyModule
from .logs import Log

psutil = LazyModule("psutil")  # ~1 MB: loaded when first used (processes to scan or sample)

log = logging.getLogger(__name__)

# A pipe that fills up is widened to this, so a fast writer goes on while the loop is busy
# with followers. Only those: an unprivileged user's pipes share a budget
# (fs.pipe-user-pages-soft, 64 MiB), past which every new pipe gets 4 KiB.
PIPE_BYTES = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
MARK_ID = "JINAD_OBJECT_ID"
MARK_HOME = "JINAD_HOME"
WATCH_INTERVAL_S = 1.0
# A child that lives on but stopped serving (no process died) is found within this.
PORT_CHECK_INTERVAL_S = 3.0
# What a child's stdout holds while no daemon reads it: at a line of 100 bytes a millisecond,
# about 2.5 s of output before the child waits for the next daemon.
AWAY_PIPE_BYTES = 256 * 1024
KEEPER_NAME = "jinad-keeper"
SHELL = "/bin/sh"
# $1 object id, $2 home, $3 its run folder; the child's argv after. fd 1 and 2 are the pipes'
# write ends: read ends of the same pipes are opened through /dev/stdout and /dev/stderr and kept.
# Signals are ignored here once the child runs (a stop signals the child's own session, never the
# keeper's); SIGINT and SIGQUIT, which a shell's background job starts with ignored, the child
# gets back in TRAMPOLINE.
KEEPER_SCRIPT = r"""id=$1 home=$2 dir=$3; shift 3
exec 3</dev/stdout 4</dev/stderr </dev/null
JINAD_OBJECT_ID=$id JINAD_HOME=$home "$@" 3<&- 4<&- &
child=$!
trap '' TERM INT HUP QUIT PIPE
echo $child > "$dir/keeper.$$.child"
exec 1>/dev/null 2>&1
wait $child
echo $? > "$dir/keeper.$$.exit"
while [ -d "$dir" ] && [ ! -e "$dir/keeper.$$.released" ]; do sleep 1; done
"""
# The child's first moments, before it execs: its own session (and process group), and the
# signals a shell's background job starts with ignored back to their defaults.
TRAMPOLINE = """import os, signal, sys
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_DFL)
os.setsid()
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    sys.stderr.write(f"could not run {sys.argv[1]}: {exc}\\n")
    os._exit(127)
"""
KEEPER_START_S = 10.0  # a keeper says its child's pid within this
READY_POLL_S = 0.02  # a start is answered this soon after the object is ready


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _PipeToLog(asyncio.Protocol):
    """Feeds one of a child's pipes into its log as the loop reads it: one decode and one
    append per read, long lines split, no task and no buffer in between, so the child is
    never held up by the daemon."""

    def __init__(self, name: str, sink: Log, max_line: int, watch: bytes | None = None, keep: Path | None = None) -> None:
        self.name, self.sink, self.max_line = name, sink, max_line
        self.pending = b""
        # What was read but is not in the log yet, kept on disk too (`keep`) for the next daemon
        # should this one end meanwhile (see data_received).
        self.keep_fd = -1
        self.kept = 0  # bytes of `keep` that hold its tag and `pending`
        self.last_seq = 0  # of the last line this stream appended
        self.closed = asyncio.get_running_loop().create_future()
        # Set when a line holding `watch` has been read (searched for until then, not after).
        self.watch = watch
        self.seen = asyncio.get_running_loop().create_future()
        self.fd = -1
        self.capacity = PIPE_BYTES  # until known: no widening
        if keep is not None:
            self._take_kept(keep)

    def _take_kept(self, keep: Path) -> None:
        try:
            self.keep_fd = os.open(keep, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return
        self.last_seq = self.sink.last_line_of(self.name) or 0
        try:
            kept = os.pread(self.keep_fd, os.fstat(self.keep_fd).st_size, 0)
        except OSError:
            kept = b""
        tag, _, rest = kept.partition(b"\n")
        if rest and tag.isdigit():
            # Read by a previous daemon and not (all) in the log: the lines of it the log has
            # are those of this stream after the tag (a daemon killed in its log write has
            # written some of them; a torn last one is cut off when the log is opened).
            cut = _cut(rest, self.max_line)
            lines = split_lines(rest[:cut], self.max_line) if cut else []
            done = self.sink.count_after(self.name, int(tag)) if lines else 0
            if lines[done:]:
                self.sink.append(self.name, lines[done:])
                self.sink.flush()
                self.last_seq = self.sink.last_seq
            self.pending = rest[cut:]
        self._keep(b"%d\n%s" % (self.last_seq, self.pending), 0, truncate=True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.fd = transport.get_extra_info("pipe").fileno()
            self.capacity = fcntl.fcntl(self.fd, fcntl.F_GETPIPE_SZ)

    def splice_from(self, fd: int) -> bytes:
        """What the pipe holds, moved into `keep` first by the kernel, which takes bytes out
        of the pipe only as they are written there: a daemon killed right after a read()
        would lose what it had read (up to a whole read, 256,000 bytes under uvloop)."""
        moved = os.splice(fd, self.keep_fd, PIPE_BYTES, offset_dst=self.kept, flags=os.SPLICE_F_NONBLOCK)
        return os.pread(self.keep_fd, moved, self.kept) if moved else b""

    def data_received(self, chunk: bytes) -> None:
        """Bytes read from the pipe (and, with `keep`, kept there already): into the log."""
        if self.capacity < PIPE_BYTES and len(chunk) > self.capacity // 2:  # about full: the writer waits
            self._widen()
        data = self.pending + chunk if self.pending else chunk
        cut = _cut(data, self.max_line)
        if cut:
            self._append(data[:cut])
        self.pending = data[cut:]
        if self.keep_fd >= 0:
            self._keep(b"%d\n%s" % (self.last_seq, self.pending), 0, truncate=True)

    def _keep(self, data: bytes, offset: int, truncate: bool = False) -> None:
        """`keep` holds the number of this stream's last line in the log, then the bytes read
        after it (what `pending` holds, and while a read is handled, that read). The next
        daemon takes them: all of them when the log's last line of the stream is that number,
        else (this one ended between its append and this write) only the unended line."""
        try:
            os.pwrite(self.keep_fd, data, offset)
            if truncate:
                os.ftruncate(self.keep_fd, len(data))
                self.kept = len(data)
        except OSError:
            pass

    def eof_received(self) -> bool:
        if self.pending:
            self._append(self.pending)
            self.pending = b""
            if self.keep_fd >= 0:
                self._keep(b"%d\n" % self.last_seq, 0, truncate=True)
        return False  # close the transport

    def _widen(self) -> None:
        try:
            self.capacity = fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # above pipe-max-size, or the user's pipe budget spent: as it is
            self.capacity = PIPE_BYTES

    def _append(self, raw: bytes) -> None:
        if self.watch is not None and self.watch in raw:  # whole lines: a line is never split here
            self.watch = None
            self.seen.set_result(None)
        # An error here would make the loop close the pipe, and the child die of SIGPIPE.
        try:
            self.sink.append(self.name, split_lines(raw, self.max_line))
            self.last_seq = self.sink.last_seq
            self.sink.flush()
        except Exception:
            log.exception("could not keep %d bytes of output of %s", len(raw), self.sink.path.name)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.keep_fd >= 0:
            os.close(self.keep_fd)
            self.keep_fd = -1
        if not self.closed.done():
            self.closed.set_result(None)


class _SplicedPipe(asyncio.ReadTransport):
    """A child's pipe read into a _PipeToLog that keeps what it reads (see splice_from), in
    place of the loop's pipe transport, which reads into memory first."""

    def __init__(self, file: BinaryIO, protocol: _PipeToLog) -> None:
        super().__init__()
        self._file, self._fd, self._protocol = file, file.fileno(), protocol
        self._loop = asyncio.get_running_loop()
        self._closing = False
        os.set_blocking(self._fd, False)
        protocol.connection_made(self)
        self._loop.add_reader(self._fd, self._read)

    def get_extra_info(self, name: str, default=None):
        return self._file if name == "pipe" else default

    def is_closing(self) -> bool:
        return self._closing

    def _read(self) -> None:
        try:
            chunk = self._protocol.splice_from(self._fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        if chunk:
            self._protocol.data_received(chunk)
        else:  # every writer has gone
            self._protocol.eof_received()
            self._close(None)

    def close(self) -> None:
        self._close(None)

    def _close(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._file.closefd:
            self._file.close()
        else:  # the loop would have closed it (see _loop_closes_pipes)
            os.close(self._fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)


def _cut(data: bytes, max_line: int) -> int:
    """Where the whole lines of some output end (a line without end in sight is cut, not hoarded)."""
    cut = data.rfind(b"\n") + 1
    if cut == 0 and len(data) > max_line:
        cut = len(data) - len(data) % max_line
    return cut


def split_lines(raw: bytes, max_line: int) -> list[str]:
    """The lines of a run of output: bad UTF-8 becomes U+FFFD, colour codes and CRs before the
    newline go, lines longer than max_line are split."""
    text = raw.decode("utf-8", "replace")
    if "\x1b" in text:
        text = ANSI.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if max(map(len, lines), default=0) * 4 > max_line:  # (a character is at most 4 bytes in UTF-8)
        lines = [piece for line in lines for piece in _pieces(line, max_line)]
    return lines


def _pieces(line: str, max_bytes: int) -> list[str]:
    """A line as pieces of at most `max_bytes` bytes of UTF-8, never cut inside a character."""
    data = line.encode()
    if len(data) <= max_bytes:
        return [line]
    pieces = []
    while data:
        cut = max_bytes
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # a continuation byte: back to its start
            cut -= 1
        if cut == 0:  # a character longer than max_bytes (a tiny setting): on its own
            cut = 1
            while cut < len(data) and data[cut] & 0xC0 == 0x80:
                cut += 1
        pieces.append(data[:cut].decode())
        data = data[cut:]
    return pieces


# Jina's log lines (JINA_LOG_NO_COLOR): "ERROR name@pid message   [date time]", continued
# on indented lines; with JINA_LOG_CONFIG=plain "name@pid[E]:message".
_LOGGED_ERROR = re.compile(r"^(?:ERROR|CRIT…|CRITICAL)\s+(.+?)(?:\s+\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d\])?$")
_PLAIN_ERROR = re.compile(r"^(\S+@\d+)\[[EC]\]:(.+)$")
ERROR_SCAN_LINES = 300  # error lines are looked for in this many last lines of a run
ERROR_LINES = 6
ERROR_LINE_CHARS = 300


def error_lines(lines: list[str]) -> list[str]:
    """The last few error lines of some output: Jina's ERROR and CRITICAL log lines, and the
    exception line that ends each Python traceback (in Jina's log, tracebacks are indented)."""
    found: list[str] = []
    traceback_indent = None
    for raw in lines:
        line = raw.rstrip()
        text = line.lstrip()
        indent = len(line) - len(text)
        if traceback_indent is not None:
            if not text or indent > traceback_indent:
                continue  # its frames and source lines
            # Back at its own indent: its exception line (or, left of it, it ended without one).
            at_exception = indent == traceback_indent and not text.startswith("Traceback")
            traceback_indent = None
            if at_exception:
                found.append(text)
                continue
        if text.startswith("Traceback (most recent call last):"):
            traceback_indent = indent
            continue
        logged = _LOGGED_ERROR.match(line) or _PLAIN_ERROR.match(line)
        if logged:
            message = " ".join(g for g in logged.groups() if g).strip()
            if not message.endswith(":"):  # "An exception occurred:" and the like say nothing
                found.append(message)
    unique = list(dict.fromkeys(reversed(found)))[:ERROR_LINES]  # the last ones, each once
    return [line[:ERROR_LINE_CHARS] for line in reversed(unique)]


def group_members(pgids: set[int]) -> dict[int, list[psutil.Process]]:
    """The processes of each of these process groups, from one scan of the process table."""
    members: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter():
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            continue
        if pgid in pgids:
            members.setdefault(pgid, []).append(proc)
    return members


def tree(pgid: int, object_id: str | None = None, home: str | None = None) -> list[psutil.Process]:
    """Processes of a child's tree: its process group, plus (when asked) any process carrying the
    child's markers, which finds descendants that left the group with setsid()."""
    found = group_members({pgid}).get(pgid, [])
    if object_id:
        pids = {proc.pid for proc in found}
        found += [proc for proc in psutil.process_iter() if proc.pid not in pids and _marked(proc, object_id, home)]
    return found


def _marked(proc: psutil.Process, object_id: str, home: str | None) -> bool:
    try:
        env = proc.environ()
    except psutil.Error:
        return False
    return env.get(MARK_ID) == object_id and env.get(MARK_HOME) == home


def _proc_read(pid: int, name: str) -> list[str] | None:
    """A process's /proc/<pid>/cmdline or environ, as its NUL-separated strings (None when it
    is gone or not ours to read), decoded as psutil does."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return os.fsdecode(raw).split("\0")[:-1] if raw else []


def _scan_processes(matches: Callable[[int], str | None]) -> dict[str, list[psutil.Process]]:
    """The processes for which `matches` (reading /proc, not psutil: the scan at every start
    would otherwise load psutil into an idle daemon) names an object id, by that id."""
    found: dict[str, list[psutil.Process]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (object_id := matches(int(entry))) is not None:
            with contextlib.suppress(psutil.Error):
                found.setdefault(object_id, []).append(psutil.Process(int(entry)))
    return found


def find_marked(home: str) -> dict[str, list[psutil.Process]]:
    """Every process that a daemon with this home started, by object id (for recovery)."""
    def marked(pid: int) -> str | None:
        env = dict(item.partition("=")[::2] for item in _proc_read(pid, "environ") or ())
        return env[MARK_ID] if env.get(MARK_HOME) == home and MARK_ID in env else None

    return _scan_processes(marked)


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    groups = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            groups.add(os.getpgid(proc.pid))
            proc.send_signal(sig)
    for group in groups:
        if group != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)


async def end_processes(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM every process (and its group), wait up to `grace`, then SIGKILL what is left."""
    if not procs:
        return
    _signal_all(procs, signal.SIGTERM)
    alive = await _gone_or_alive(procs, grace)
    if alive:
        log.warning("%d process(es) ignored SIGTERM for %.1fs; killing", len(alive), grace)
        _signal_all(alive, signal.SIGKILL)
        await _gone_or_alive(alive, 5.0)


async def _gone_or_alive(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process is gone (a zombie counts as gone); those still alive at the end.
    Polling, not psutil.wait_procs: that reaps our own children with waitpid() behind the
    event loop's back, and the loop then never learns their exit."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.02)


async def sample_children(children: list[Child]) -> dict[Child, dict]:
    """Resources of each child's group (see Child.resources), from one scan of the process table."""
    if not children:
        return {}
    members = await asyncio.to_thread(group_members, {child.pid for child in children})
    return {child: await asyncio.to_thread(child.resources, members.get(child.pid, [])) for child in children}


def _keeper_file(run_dir: Path, keeper_pid: int, what: str) -> Path:
    return run_dir / f"keeper.{keeper_pid}.{what}"


def _read_number(path: Path) -> int | None:
    """A number a keeper wrote (one `echo`: it counts once its newline is there)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return int(text) if text.endswith("\n") and text.strip().lstrip("-").isdigit() else None


def _exit_code(status: int | None) -> int | None:
    """A shell's exit status as Python's returncode: 128 + n is a death by signal n, -n."""
    if status is not None and 128 < status < 128 + signal.NSIG:
        return -(status - 128)
    return status


async def process_ended(pid: int) -> None:
    """Wait until a process (ours or not) has ended, through a pidfd: no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class Child:
    """A running child under its keeper: its process group, pipe readers and exit."""

    def __init__(self, pid: int, keeper_pid: int, keeper: subprocess.Popen | None,
                 pipes: list[tuple[asyncio.ReadTransport, _PipeToLog]], object_id: str, home: str, sink: Log,
                 first_seq: int, announced: asyncio.Future | None = None) -> None:
        self.pid = pid  # also the process group id: it is the group's leader
        self.keeper_pid = keeper_pid
        self._keeper = keeper  # when this daemon started it, to reap it
        self.run_dir = Path(home) / "run" / object_id
        self.pipes = pipes
        self.sink = sink
        self.first_seq = first_seq  # its first line in the log (the log holds earlier runs' too)
        # Done once stdout showed the line that says it serves (when spawn was given one).
        self.announced = announced
        self.returncode: int | None = None  # once it ended: its code (None: not known)
        self._released = False
        self._exit = asyncio.ensure_future(self._watch())  # one waiter for all the polls
        self.object_id = object_id
        self.home = home
        self._samples: dict[int, psutil.Process] = {}
        # Set from outside when a part of the object that runs elsewhere (a Flow's remote
        # executor) ended: `wait` then ends the rest with this reason, as for a local part.
        self.fault: str | None = None

    @property
    def has_exited(self) -> bool:
        return self._exit.done()

    async def _watch(self) -> int | None:
        """Wait for the child's end, then for the code its keeper reaped (None if the keeper
        is gone without saying it)."""
        await process_ended(self.pid)
        exit_file = _keeper_file(self.run_dir, self.keeper_pid, "exit")
        deadline = time.monotonic() + 5.0
        while (status := _read_number(exit_file)) is None and time.monotonic() < deadline:
            if not _pid_running(self.keeper_pid):
                status = _read_number(exit_file)
                break
            await asyncio.sleep(0.005)
        self.returncode = _exit_code(status)
        return self.returncode

    def _runtimes(self) -> list[psutil.Process]:
        """Jina's runtime processes: forks of the leader, so they share its command line."""
        try:
            command = psutil.Process(self.pid).cmdline()
        except psutil.Error:
            return []
        found = []
        for proc in tree(self.pid):
            with contextlib.suppress(psutil.Error):
                if proc.cmdline() == command:
                    found.append(proc)
        return found

    async def wait(self, grace: float, ports: list[int] = ()) -> tuple[int | None, str | None]:
        """Wait until the object ends: its leader exits, one of its runtime processes dies, or
        a port it served is closed (Jina's parent notices a dead worker only after a minute).
        Then end the rest of the group, which cannot go on alone. Returns the leader's exit
        code and, when the daemon ended it, why."""
        runtimes = await asyncio.to_thread(self._runtimes)
        # A death wakes the wait through its pidfd; polling each runtime every second cost an
        # idle daemon ~2 % of a core per object (psutil reads /proc twice per process).
        deaths = {asyncio.ensure_future(process_ended(proc.pid)): proc for proc in runtimes}
        polled: list[psutil.Process] = []  # those whose pidfd could not be had (out of fds): asked each time
        reason = None
        next_port_check = time.monotonic() + PORT_CHECK_INTERVAL_S
        try:
            while reason is None and not await self.exited_within(WATCH_INTERVAL_S, deaths):
                dead = []
                for death in [death for death in deaths if death.done()]:
                    proc = deaths.pop(death)
                    if death.exception() is None:
                        dead.append(proc.pid)
                    else:
                        polled.append(proc)
                dead += [proc.pid for proc in polled if not _running(proc)]
                closed = []
                if time.monotonic() >= next_port_check:
                    closed = [port for port in ports if await _connect("127.0.0.1", port) == "refused"]
                    next_port_check = time.monotonic() + PORT_CHECK_INTERVAL_S
                if dead:
                    reason = f"its runtime process {dead[0]} ended"
                elif closed:
                    reason = f"it stopped serving on port {closed[0]}"
                elif self.fault:
                    reason = self.fault
        finally:
            for death in deaths:
                death.cancel()
        if reason:
            await end_processes(tree(self.pid), grace)
        code = await asyncio.shield(self._exit)
        # What is left of it, in its group or (setsid) found by its markers, cannot go on alone.
        await end_processes(await asyncio.to_thread(tree, self.pid, self.object_id, self.home), grace=2.0)
        await self._drain()
        return code, reason

    async def exited_within(self, timeout: float, or_until: Iterable[asyncio.Future] = ()) -> bool:
        """Has the leader exited, waiting at most `timeout` (and no longer than until one of
        `or_until` is done)? asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a
        cancel that arrives as the wait ends (gh-86296), and a supervisor that misses its
        cancel never stops."""
        await asyncio.wait({self._exit, *or_until}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return self._exit.done()

    async def announced_within(self, timeout: float) -> bool:
        """Has it said it serves (or has nothing to say), waiting at most `timeout` and no
        longer than it runs?"""
        if self.announced is None:
            return True
        await asyncio.wait({self._exit, self.announced}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return self.announced.done()

    def ended(self) -> str:
        """How its leader ended, in words."""
        code = self.returncode
        if code is None:
            return "it ended; its exit code is not known (its keeper was gone)"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"it was ended by {signal.Signals(-code).name} (exit code {code})"
        return f"it ended by itself with exit code {code}"

    def explain(self, reason: str) -> str:
        """The reason, with the last error lines this run printed (read once it has ended:
        its pipes are drained by then)."""
        lines = [entry.line for entry in self.sink.tail(ERROR_SCAN_LINES) if entry.seq >= self.first_seq]
        errors = error_lines(lines)
        return f"{reason}; last errors in its log: {' | '.join(errors)}" if errors else reason

    async def _drain(self) -> None:
        # Pipes close once every writer is gone; a writer that escaped the group may hold them.
        await asyncio.wait([reader.closed for _, reader in self.pipes], timeout=2.0)
        for transport, reader in self.pipes:
            if not reader.closed.done():
                transport.close()
        self._release()

    def _release(self) -> None:
        """Every line is read: the keeper may go (and is reaped, and its files removed)."""
        if self._released:
            return
        self._released = True
        with contextlib.suppress(OSError):
            _keeper_file(self.run_dir, self.keeper_pid, "released").touch()
        self._forget_keeper()

    def _forget_keeper(self) -> None:
        """Once the keeper has gone: reap it (when it is ours) and remove its files. A callback
        on its pidfd, not a task, so a daemon that exits first leaves nothing pending."""
        try:
            fd = os.pidfd_open(self.keeper_pid)
        except OSError:
            fd = -1
        else:
            _continue(fd)
        loop = asyncio.get_running_loop()

        def gone() -> None:
            if fd >= 0:
                loop.remove_reader(fd)
                os.close(fd)
            if self._keeper is not None:
                self._keeper.poll()
            for what in ("child", "exit", "released"):
                _keeper_file(self.run_dir, self.keeper_pid, what).unlink(missing_ok=True)

        if fd < 0:
            gone()
        else:
            loop.add_reader(fd, gone)

    def detach(self) -> None:
        """Leave it running for the next daemon: stop reading (its keeper holds the pipes)."""
        self._exit.cancel()
        for transport, _ in self.pipes:
            transport.close()

    async def stop(self, grace: float) -> int | None:
        """End the whole tree and return the leader's exit code once no process of it is left."""
        try:
            for _ in range(3):
                procs = tree(self.pid, self.object_id, self.home)
                if not procs:
                    break
                await end_processes(procs, grace)
            with contextlib.suppress(OSError):  # a stopped keeper would not say the exit code
                fd = os.pidfd_open(self.keeper_pid)
                _continue(fd)
                os.close(fd)
            await self.exited_within(5.0)
            await self._drain()
        finally:  # even when cancelled meanwhile: nobody comes back for what it keeps
            self._release()
        return self.returncode

    def resources(self, members: list[psutil.Process]) -> dict:
        """CPU, memory and process count summed over the group's members (CPU since the
        previous call: the same psutil.Process objects are kept between calls)."""
        cpu = rss = count = 0
        seen = {}
        for proc in members:
            proc = self._samples.get(proc.pid, proc)
            try:
                cpu += proc.cpu_percent(interval=None)
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            seen[proc.pid] = proc
            count += 1
        self._samples = seen
        return {"cpu_percent": round(cpu, 1), "memory_rss": rss, "processes": count}


def _continue(pidfd: int) -> None:
    """SIGCONT to a keeper someone stopped (SIGSTOP): it could neither reap its child nor see it
    is released, and both stayed, a stopped shell and a zombie, past a delete and a shutdown."""
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(pidfd, signal.SIGCONT)


def _pid_running(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.Error:
        return False


async def spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str], sink: Log, max_line: int, object_id: str, home: str,
                ready_line: str | None = None) -> Child:
    """Start argv under a keeper, in its own session, with its stdout and stderr drained into
    `sink`; with `ready_line`, `Child.announced` is set once a line of its stdout holds that text."""
    if not shutil.which(argv[0], path=env.get("PATH", os.defpath)) and not os.access(argv[0], os.X_OK):
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    run_dir = Path(home) / "run" / object_id
    run_dir.mkdir(parents=True, exist_ok=True)
    ours: list[int] = []  # descriptors to close before returning: the write ends (the keeper has its own)
    try:
        # Pipes, not what asyncio would make: uvloop gives children a socketpair, whose
        # per-write kernel buffers cost a fast writer about twice a pipe's time.
        out_read, out_write = os.pipe()
        ours += [out_read, out_write]
        err_read, err_write = os.pipe()
        ours += [err_read, err_write]
        with contextlib.suppress(OSError):  # what it may print while no daemon reads
            fcntl.fcntl(out_read, fcntl.F_SETPIPE_SZ, AWAY_PIPE_BYTES)
        files = _pipe_files([out_read, err_read])
        ours = [out_write, err_write]  # the read ends are the readers' now
        first_seq = sink.last_seq + 1
        watch = ready_line.encode() if ready_line else None
        for stream in ("stdout", "stderr"):  # a new child: nothing of an earlier one's to take
            (run_dir / f"pending.{stream}").unlink(missing_ok=True)
        pipes = await _connect_readers(files, sink, max_line, watch, run_dir)
        try:
            keeper = subprocess.Popen(
                [SHELL, "-c", KEEPER_SCRIPT, KEEPER_NAME, object_id, home, str(run_dir), sys.executable, "-S", "-I", "-c",
                 TRAMPOLINE, *argv],
                cwd=cwd, env={k: v for k, v in env.items() if k not in (MARK_ID, MARK_HOME)},
                stdin=subprocess.DEVNULL, stdout=out_write, stderr=err_write, start_new_session=True,
            )
        except BaseException:
            for transport, _ in pipes:
                transport.close()
            raise
    finally:
        for fd in ours:
            os.close(fd)

    def make(pid: int) -> Child:
        return Child(pid, keeper.pid, keeper, pipes, object_id, home, sink, first_seq, pipes[0][1].seen if watch else None)

    # Shielded: a cancel meanwhile ends the child once its pid is known (as a stop would).
    learning = asyncio.ensure_future(_child_of(keeper.pid, run_dir, keeper))
    try:
        return make(await asyncio.shield(learning))
    except asyncio.CancelledError:
        learning.add_done_callback(lambda done: asyncio.ensure_future(_end_unwanted(done, make, keeper)))
        raise
    except BaseException:
        for transport, _ in pipes:
            transport.close()
        with contextlib.suppress(OSError):
            keeper.kill()
        raise


async def _end_unwanted(learning: asyncio.Future, make, keeper: subprocess.Popen) -> None:
    """End a child whose start was cancelled."""
    if learning.cancelled() or learning.exception() is not None:
        with contextlib.suppress(OSError):
            keeper.kill()
        return
    await make(learning.result()).stop(2.0)


async def _child_of(keeper_pid: int, run_dir: Path, keeper: subprocess.Popen) -> int:
    """The pid of the keeper's child, as the keeper writes it right after starting it."""
    deadline = time.monotonic() + KEEPER_START_S
    while (pid := _read_number(_keeper_file(run_dir, keeper_pid, "child"))) is None:
        if keeper.poll() is not None or time.monotonic() > deadline:
            raise OSError(f"its keeper ({SHELL}) did not start it (exit code {keeper.returncode})")
        await asyncio.sleep(0.002)
    return pid


def _pipe_files(fds: list[int]) -> list[tuple[str, BinaryIO]]:
    closefd = not _loop_closes_pipes(asyncio.get_running_loop())
    return [("stdout", open(fds[0], "rb", buffering=0, closefd=closefd)),
            ("stderr", open(fds[1], "rb", buffering=0, closefd=closefd))]


async def _connect_readers(files, sink: Log, max_line: int, watch: bytes | None, keep: Path):
    # Shielded: a cancel meanwhile lets them finish, then closes them.
    connecting = asyncio.ensure_future(_readers(files, sink, max_line, watch, keep))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        connecting.add_done_callback(_close_readers)
        raise


def find_keepers(home: str) -> dict[str, list[psutil.Process]]:
    """The keepers that daemons with this home started, by object id (more than one for an id
    when a daemon was killed while it started that object again)."""
    def keeper(pid: int) -> str | None:
        cmd = _proc_read(pid, "cmdline") or []
        if len(cmd) > 6 and cmd[0] == SHELL and cmd[2] == KEEPER_SCRIPT and cmd[3] == KEEPER_NAME and cmd[5] == home:
            return cmd[4]
        return None

    return _scan_processes(keeper)


async def adopt(keeper: psutil.Process, expected_pid: int | None, object_id: str, home: str, sink: Log,
                max_line: int) -> Child | None:
    """Take back a child a previous daemon left under this keeper, reading its pipes on from
    where they are; None when it is not the one recorded (then it is to be ended)."""
    run_dir = Path(home) / "run" / object_id
    pid = _read_number(_keeper_file(run_dir, keeper.pid, "child"))
    if pid is None or (expected_pid is not None and pid != expected_pid):
        return None
    if _read_number(_keeper_file(run_dir, keeper.pid, "exit")) is None:  # still running: is it ours?
        try:
            proc = psutil.Process(pid)
            env = proc.environ()
            if (proc.ppid() != keeper.pid or proc.create_time() < keeper.create_time() - 1
                    or env.get(MARK_ID) != object_id or env.get(MARK_HOME) != home):
                return None
        except psutil.Error:
            return None
    fds: list[int] = []
    try:
        for n in (3, 4):
            fds.append(os.open(f"/proc/{keeper.pid}/fd/{n}", os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    pipes = await _connect_readers(_pipe_files(fds), sink, max_line, None, run_dir)
    return Child(pid, keeper.pid, None, pipes, object_id, home, sink, sink.last_seq + 1)


def _loop_closes_pipes(loop: asyncio.AbstractEventLoop) -> bool:
    """Does this loop close a read pipe's descriptor itself? uvloop's libuv does, and then the
    file object would close the same number a second time, maybe someone else's by then."""
    return type(loop).__module__.startswith("uvloop")


async def _readers(files: list[tuple[str, BinaryIO]], sink: Log, max_line: int,
                   watch: bytes | None, keep: Path | None = None) -> list[tuple[asyncio.ReadTransport, _PipeToLog]]:
    """Readers of stdout and stderr (in that order); stdout's watches for `watch`."""
    loop = asyncio.get_running_loop()
    pipes: list[tuple[asyncio.ReadTransport, _PipeToLog]] = []
    try:
        for name, file in files:
            watching = watch if name == "stdout" else None
            kept = keep / f"pending.{name}" if keep is not None else None
            reader = _PipeToLog(name, sink, max_line, watching, kept)
            if reader.keep_fd >= 0:
                pipes.append((_SplicedPipe(file, reader), reader))
            else:
                pipes.append(await loop.connect_read_pipe(lambda reader=reader: reader, file))
    except BaseException:
        for transport, _ in pipes:
            transport.close()
        raise
    return pipes


def _close_readers(connecting: asyncio.Future) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        for transport, _ in connecting.result():
            transport.close()


async def _connect(host: str, port: int) -> str:
    """Try a TCP connection: "open", "refused" (nobody listens) or "unknown" (no answer within
    1 s, or another error)."""
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return "refused"
    except (OSError, TimeoutError):
        return "unknown"
    # A port in the kernel's ephemeral range that nobody listens on can be given to this very
    # connection, which then reaches itself (TCP simultaneous open): not a server, and it holds
    # the port the child is about to bind (seen: `ready` in 7 ms, then "Address already in use").
    itself = writer.get_extra_info("sockname") == writer.get_extra_info("peername")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "refused" if itself else "open"


async def probe(host: str, port: int, check: str, session: aiohttp.ClientSession) -> bool:
    """Does the port answer? A TCP connect, and for `dry_run` a real `GET /dry_run` too."""
    if await _connect(host, port) != "open":
        return False
    if check == "tcp":
        return True
    try:
        async with session.get(f"http://{host}:{port}/dry_run", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200 and (await resp.json(content_type=None)).get("code") == 0
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
        return False


async def wait_ready(child: Child, host: str, probes: list[tuple[int, str]], timeout: float) -> str | None:
    """Wait until the child says it serves (when it was given a line that says so), then poll
    until every probe answers; the reason it never did, or None when it is ready."""
    deadline = time.monotonic() + timeout
    if not await child.announced_within(timeout):
        if child.has_exited:
            return f"{child.ended()} before it was ready"
        return f"not ready within {timeout:g}s (it never said it serves)"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.has_exited:
                return f"{child.ended()} before it was ready"
            results = await asyncio.gather(*(probe(host, port, check, session) for port, check in probes))
            if all(results):
                return None
            await child.exited_within(READY_POLL_S)
    return f"not ready within {timeout:g}s"
