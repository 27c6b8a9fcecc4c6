"""Per-object cgroups (v1 controllers), which enforce `limits` and count an object's resources.

Layout, under the daemon's own cgroup of each controller (so a daemon that is itself capped
keeps its children inside its cap): `<mount>/<daemon's cgroup>/jinad/<home hash>/<object id>`.
An object with limits gets a group in every controller there is (memory, cpu, cpuacct, pids),
limits written where asked; its child joins them before it runs anything: it is started through
`/bin/sh`, which writes its own pid into each `cgroup.procs` and then execs the command, so even
the first instruction of `jina` is capped and counted, and nothing needs a `preexec_fn` (which
is unsafe in a process with threads).

An OOM kill is read from the group's `memory.oom_control` (`oom_kill N`, counted by the kernel),
never guessed from an exit code. Groups are removed when their object is deleted or the daemon
stops; a group that still holds processes (kept for a live restore) is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from .errors import BadRequest

log = logging.getLogger(__name__)
CFS_PERIOD_US = 100_000
# What caps each limit; the accounting-only controller is joined when it is there.
LIMIT_CONTROLLERS = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
ACCOUNTING = ("cpuacct",)
# Joins every cgroup named before `--`, then becomes the command: the pid stays the same.
JOIN_SCRIPT = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'


def _v1_mounts(proc: Path) -> dict[str, tuple[Path, str]]:
    """Each v1 controller's (mount point, root of the mount within its hierarchy)."""
    mounts: dict[str, tuple[Path, str]] = {}
    with contextlib.suppress(OSError):
        for line in (proc / "self" / "mountinfo").read_text().splitlines():
            head, _, tail = line.partition(" - ")
            fields, extra = head.split(), tail.split()
            if len(fields) < 5 or len(extra) < 3 or extra[0] != "cgroup":
                continue
            for option in extra[2].split(","):
                mounts.setdefault(option, (Path(fields[4]), fields[3]))
    return mounts


def _own_paths(proc: Path) -> dict[str, str]:
    """The daemon's own cgroup in each v1 hierarchy, by controller."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (proc / "self" / "cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                if controller:
                    paths[controller] = path
    return paths


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


class Group:
    """One object's cgroups, one directory per controller."""

    def __init__(self, dirs: dict[str, Path], limits: dict) -> None:
        self.dirs = dirs
        self.limits = limits
        self._oom_mark = 0
        self._cpu_sample: tuple[float, int] | None = None

    def apply(self) -> None:
        """Make the directories and write the limits (OSError when the kernel refuses one)."""
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):  # a leftover, empty group: start afresh
                directory.rmdir()
            directory.mkdir(parents=True, exist_ok=True)
        if "memory" in self.limits:
            memory = self.dirs["memory"]
            _write(memory / "memory.limit_in_bytes", self.limits["memory"])
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no way around it through swap
                _write(memory / "memory.memsw.limit_in_bytes", self.limits["memory"])
        if "cpus" in self.limits:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", max(1000, round(self.limits["cpus"] * CFS_PERIOD_US)))
        if "pids" in self.limits:
            _write(self.dirs["pids"] / "pids.max", self.limits["pids"])
        self.mark_oom_kills()

    def mark_oom_kills(self) -> None:
        """Count OOM kills from now on (one run of the object)."""
        self._oom_mark = self.oom_kills()

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """argv run so that the process joins this group before it runs the command."""
        procs = [str(directory / "cgroup.procs") for directory in self.dirs.values()]
        return ["/bin/sh", "-c", JOIN_SCRIPT, "jinad-join-cgroup", str(len(procs)), *procs, *argv]

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer ended in this group, ever."""
        memory = self.dirs.get("memory")
        if memory is None:
            return 0
        with contextlib.suppress(OSError):
            for line in (memory / "memory.oom_control").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
        return 0

    def oom_killed(self) -> int:
        """OOM kills since the limits were last applied (this run of the object)."""
        return self.oom_kills() - self._oom_mark

    def pids(self) -> list[int]:
        for directory in self.dirs.values():
            with contextlib.suppress(OSError, ValueError):
                return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
        return []

    def counts_resources(self) -> bool:
        return "memory" in self.dirs and "cpuacct" in self.dirs

    def resources(self) -> dict:
        """CPU (since the previous call), memory and processes of the group, from its files."""
        now, used = time.monotonic(), _read_int(self.dirs["cpuacct"] / "cpuacct.usage")
        cpu = 0.0
        if self._cpu_sample is not None and now > self._cpu_sample[0]:
            cpu = (used - self._cpu_sample[1]) / 1e9 / (now - self._cpu_sample[0]) * 100
        self._cpu_sample = (now, used)
        rss = 0
        with contextlib.suppress(OSError):
            for line in (self.dirs["memory"] / "memory.stat").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "total_rss":
                    rss = int(value)
        return {"cpu_percent": round(max(cpu, 0.0), 1), "memory_rss": rss, "processes": len(self.pids())}

    def remove(self) -> None:
        """Remove the directories; one that still holds a process stays (EBUSY)."""
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cgroup %s is kept: %s", directory, exc)


class Cgroups:
    """The cgroups a daemon of this home may make, and its objects' groups."""

    def __init__(self, home: str, proc: Path = Path("/proc")) -> None:
        tag = hashlib.sha256(home.encode()).hexdigest()[:12]
        mounts, own = _v1_mounts(proc), _own_paths(proc)
        self.bases: dict[str, Path] = {}  # controller -> folder of this home's groups
        for controller in (*LIMIT_CONTROLLERS.values(), *ACCOUNTING):
            if controller not in mounts or controller not in own:
                continue
            mount, root = mounts[controller]
            path = own[controller]
            if root != "/" and path.startswith(root):  # a mount of a subtree (a cgroup namespace)
                path = path[len(root):]
            parent = mount / path.lstrip("/")
            if (parent / "cgroup.procs").exists() and os.access(parent, os.W_OK):
                self.bases[controller] = parent / "jinad" / tag
        self.groups: dict[str, Group] = {}

    @property
    def available(self) -> dict[str, bool]:
        """Which limits this daemon can enforce (what `GET /status` shows)."""
        return {key: controller in self.bases for key, controller in LIMIT_CONTROLLERS.items()}

    def check(self, limits: dict) -> None:
        """BadRequest when a limit asked for cannot be enforced here."""
        missing = [key for key in limits if not self.available[key]]
        if missing:
            can = [key for key, ok in self.available.items() if ok]
            raise BadRequest(f"this daemon cannot enforce limits on {', '.join(missing)} (no writable cgroup controller for it); "
                             f"it can enforce {', '.join(can) if can else 'none'} (see GET /status)")

    def make(self, object_id: str, limits: dict) -> Group:
        """The object's group, made (or made again) with these limits; OSError if refused."""
        self.check(limits)
        group = Group({controller: base / object_id for controller, base in self.bases.items()}, limits)
        self.groups[object_id] = group  # known first: a group the kernel refused is still removed
        group.apply()
        return group

    def taken_back(self, object_id: str, limits: dict) -> Group:
        """The group a previous run of the daemon made for a child it left running (live
        restore), as it is: its limits stay, and OOM kills count from the group's making, so a
        kill while no daemon ran is said too."""
        group = Group({controller: base / object_id for controller, base in self.bases.items()}, limits)
        self.groups[object_id] = group
        return group

    def remove(self, object_id: str) -> None:
        group = self.groups.pop(object_id, None)
        if group is not None:
            group.remove()
        self._prune()

    def remove_empty(self) -> None:
        """Remove groups a previous run left empty (its objects ended while no daemon ran)."""
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                for folder in base.iterdir():
                    if folder.is_dir():
                        with contextlib.suppress(OSError):
                            folder.rmdir()
        self._prune()

    def remove_all(self) -> None:
        for object_id in list(self.groups):
            self.remove(object_id)
        self._prune()

    def _prune(self) -> None:
        """Remove this home's folders (and `jinad`) once no group is left in them."""
        for base in self.bases.values():
            for folder in (base, base.parent):
                with contextlib.suppress(OSError):
                    folder.rmdir()
