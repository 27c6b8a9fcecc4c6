"""What runs one object, held only in memory: its supervising task, child and log; and the `jina` it runs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import sys

from .cgroups import Group
from .kinds import Launch
from .logs import Log
from .supervision import Child

log = logging.getLogger(__name__)
CANCEL_ATTEMPTS = 10
NO_RESOURCES = {"cpu_percent": 0.0, "memory_rss": 0, "processes": 0}


@dataclasses.dataclass
class Runner:
    """What lives only in memory for one object: its supervising task, child and log."""

    log: Log
    launch: Launch | None = None
    task: asyncio.Task | None = None
    child: Child | None = None
    start_result: asyncio.Future | None = None  # the reason the current start failed, or None
    starts: int = 0  # starts begun, so a restart asked for during another one can join it
    followers: list[asyncio.Task] = dataclasses.field(default_factory=list)  # remote parts' logs
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    cgroup: Group | None = None  # the child's cgroups, when the object has limits
    resources: dict = dataclasses.field(default_factory=lambda: dict(NO_RESOURCES))
    # A Flow's parts on other daemons as last seen by their watchers: pod id -> the fields
    # `parts` shows (state, pid, restarts, error, resources).
    remote_seen: dict[str, dict] = dataclasses.field(default_factory=dict)
    # Bumped at every change of the object or of its resource sample: senders that keep its
    # JSON (api/objects.py) know from it when to encode again.
    revision: int = 0

    def settle(self, reason: str | None) -> None:
        if self.start_result and not self.start_result.done():
            self.start_result.set_result(reason)


async def cancel_tasks(tasks: list[asyncio.Task]) -> None:
    """Cancel tasks and wait until they are done. A cancel can be lost (a library catching
    CancelledError, or asyncio.wait_for on Python 3.11 when its wait ends at that moment), so it
    is repeated rather than awaited once forever."""
    for _ in range(CANCEL_ATTEMPTS):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    log.error("tasks did not stop after %d cancels: %s", CANCEL_ATTEMPTS, [t.get_name() for t in tasks if not t.done()])


def jina_executable() -> str:
    """The `jina` beside this Python (the daemon's own environment), else the one on PATH."""
    return shutil.which("jina", path=os.path.dirname(sys.executable)) or shutil.which("jina") or "jina"
