"""Child processes: spawning in their own process group, draining their pipes, probing
readiness, and stopping the whole tree (signal the group, wait, kill the group, check).

Every child carries two environment markers, JINAD_OBJECT_ID and JINAD_HOME, so a daemon that
starts after a crash can find what its previous run left behind, and no other daemon's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import aiohttp
import psutil

from .logs import Log

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
MARK_ID = "JINAD_OBJECT_ID"
MARK_HOME = "JINAD_HOME"
WATCH_INTERVAL_S = 1.0


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _pump(stream: asyncio.StreamReader, name: str, sink: Log, max_line: int) -> None:
    """Read a pipe at full speed into the log: one decode and one append per read, long lines
    split, never a wait on anything but the pipe, so the child is never held up."""
    pending = b""
    while chunk := await stream.read(READ_CHUNK):
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > max_line:  # a line without end in sight is cut, not hoarded
            cut = len(data) - len(data) % max_line
        if cut:
            sink.append(name, _texts(data[:cut], max_line))
            sink.flush()
        pending = data[cut:]
    if pending:
        sink.append(name, _texts(pending, max_line))
        sink.flush()


def _texts(raw: bytes, max_line: int) -> list[str]:
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
    if max(map(len, lines), default=0) > max_line:
        lines = [line[i:i + max_line] if line else "" for line in lines for i in range(0, max(len(line), 1), max_line)]
    return lines


def tree(pgid: int, object_id: str | None = None, home: str | None = None) -> list[psutil.Process]:
    """Processes of a child's tree: its process group, plus (when asked) any process carrying the
    child's markers, which finds descendants that left the group with setsid()."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid or (object_id and _marked(proc, object_id, home)):
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


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


def _marked(proc: psutil.Process, object_id: str, home: str | None) -> bool:
    try:
        env = proc.environ()
    except psutil.Error:
        return False
    return env.get(MARK_ID) == object_id and env.get(MARK_HOME) == home


def find_marked(home: str) -> dict[str, list[psutil.Process]]:
    """Every process that a daemon with this home started, by object id (for recovery)."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get(MARK_HOME) == home and MARK_ID in env:
            found.setdefault(env[MARK_ID], []).append(proc)
    return found


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


class Child:
    """A running child: its process group, pipe readers and exit."""

    def __init__(self, proc: asyncio.subprocess.Process, pumps: list[asyncio.Task], object_id: str, home: str) -> None:
        self.proc = proc
        self.pid = proc.pid  # also the process group id: it is the group's leader
        self.pumps = pumps
        self.object_id = object_id
        self.home = home
        self._samples: dict[int, psutil.Process] = {}

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

    async def wait(self, grace: float, ports: list[int] = ()) -> tuple[int, str | None]:
        """Wait until the object ends: its leader exits, one of its runtime processes dies, or
        a port it served is closed (Jina's parent notices a dead worker only after a minute).
        Then end the rest of the group, which cannot go on alone. Returns the leader's exit
        code and, when the daemon ended it, why."""
        runtimes = await asyncio.to_thread(self._runtimes)
        reason = None
        while self.proc.returncode is None and reason is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), WATCH_INTERVAL_S)
                break
            dead = [p.pid for p in runtimes if not _running(p)]
            closed = [port for port in ports if await _refused("127.0.0.1", port)]
            if dead:
                reason = f"its runtime process {dead[0]} ended"
            elif closed:
                reason = f"it stopped serving on port {closed[0]}"
        if reason:
            await end_processes(tree(self.pid), grace)
        code = await self.proc.wait()
        await end_processes(tree(self.pid), grace=2.0)
        await self._drain()
        return code, reason

    async def _drain(self) -> None:
        # Pipes close once every writer is gone; a writer that escaped the group may hold them.
        _, pending = await asyncio.wait(self.pumps, timeout=2.0)
        for task in pending:
            task.cancel()

    async def stop(self, grace: float) -> int | None:
        """End the whole tree and return the leader's exit code once no process of it is left."""
        for _ in range(3):
            procs = tree(self.pid, self.object_id, self.home)
            if not procs:
                break
            await end_processes(procs, grace)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5.0)
        await self._drain()
        return self.proc.returncode

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


async def spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str], sink: Log, max_line: int, object_id: str, home: str) -> Child:
    """Start argv in its own session with its pipes drained into `sink`."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**env, MARK_ID: object_id, MARK_HOME: home},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=READ_CHUNK,
    )
    pumps = [
        asyncio.create_task(_pump(proc.stdout, "stdout", sink, max_line)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink, max_line)),
    ]
    return Child(proc, pumps, object_id, home)


async def _refused(host: str, port: int) -> bool:
    """Is nobody listening there? (A slow answer is not a refusal.)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except ConnectionRefusedError:
        return True
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return False


async def probe(host: str, port: int, check: str, session: aiohttp.ClientSession) -> bool:
    """Does the port answer? A TCP connect, and for `dry_run` a real `GET /dry_run` too."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    if check == "tcp":
        return True
    try:
        async with session.get(f"http://{host}:{port}/dry_run", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200 and (await resp.json(content_type=None)).get("code") == 0
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
        return False


async def wait_ready(child: Child, host: str, probes: list[tuple[int, str]], timeout: float) -> str | None:
    """Poll until every probe answers; the reason it never did, or None when it is ready."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.proc.returncode is not None:
                return f"the process exited with code {child.proc.returncode} before it was ready"
            results = await asyncio.gather(*(probe(host, port, check, session) for port, check in probes))
            if all(results):
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.proc.wait()), 0.1)
    return f"not ready within {timeout:g}s"
