"""One start of one object's child: its port check, cgroups, spawn and readiness; and the check
of a child taken back from a previous run of the daemon. Each answers (None, None) when the
child serves, else (reason, exit code) with the child ended; ObjectManager makes the transitions."""

from __future__ import annotations

import asyncio
from typing import Callable

from .cgroups import Cgroups
from .config import Config
from .ports import is_free
from .records import JObject
from .runner import Runner
from .supervision import spawn, wait_ready
from .workspaces import WorkspaceManager

ADOPTED_ANSWER_S = 5.0  # how long a child taken back as ready may take to answer on its ports


class Starter:
    def __init__(self, config: Config, workspaces: WorkspaceManager, cgroups: Cgroups,
                 save: Callable[[JObject], None]) -> None:
        self.config = config
        self.workspaces = workspaces
        self.cgroups = cgroups
        self.home = str(config.home)
        self._save = save

    async def start_once(self, obj: JObject, runner: Runner) -> tuple[str | None, int | None]:
        """Spawn and wait for readiness: (None, None) when ready, else (reason, exit code)."""
        launch = runner.launch
        if runner.child is None:  # else taken back from a previous run of the daemon, still starting
            served = {plan.port for plan in launch.parts}  # by a Flow's parts, which run by now
            taken = [port for port in launch.ports.values() if port not in served and not is_free(port)]
            if taken:
                return f"port(s) {', '.join(map(str, taken))} already in use", None
            argv = launch.argv
            if obj.limits:
                try:
                    runner.cgroup = await asyncio.to_thread(self.cgroups.make, obj.id, obj.limits)
                except OSError as exc:
                    return f"could not set its limits {obj.limits}: {exc}", None
                argv = runner.cgroup.wrap(argv)
            try:
                runner.child = await spawn(
                    argv, self.workspaces.files_dir(obj.workspace_id), self.workspaces.child_env(obj.workspace_id, obj.envs),
                    runner.log, self.config.log_max_line_bytes, obj.id, self.home, launch.ready_line,
                )
            except (OSError, ValueError) as exc:  # ValueError: an argument the OS cannot take
                return f"could not run {launch.argv[0]}: {exc}", None
            obj.pid = runner.child.pid
            self._save(obj)
        reason = await wait_ready(runner.child, "127.0.0.1", launch.probes, obj.timeout_s)
        return (None, None) if reason is None else await self._end(obj, runner, reason)

    async def check_adopted(self, obj: JObject, runner: Runner) -> tuple[str | None, int | None]:
        """A child taken back as ready: (None, None) if its ports answer (or it ended while no
        daemon ran: its wait() says how); else it is ended with the reason."""
        if runner.child.has_exited:
            return None, None
        # Ports that served before answer at once: a short wait, not the start's whole timeout
        # (a worker that died while no daemon ran leaves its parent alive and its port closed).
        reason = await wait_ready(runner.child, "127.0.0.1", runner.launch.probes, min(obj.timeout_s, ADOPTED_ANSWER_S))
        return (None, None) if reason is None else await self._end(obj, runner, f"taken back after a daemon restart, {reason}")

    async def _end(self, obj: JObject, runner: Runner, reason: str) -> tuple[str, int | None]:
        code = await runner.child.stop(self.config.stop_grace_s)
        reason = self.explain(obj, runner, reason)
        runner.child = None
        return reason, code

    @staticmethod
    def explain(obj: JObject, runner: Runner, reason: str) -> str:
        """The child's own account of its end, led by the memory limit when the cgroup counted
        an OOM kill this run."""
        reason = runner.child.explain(reason)
        if runner.cgroup and (killed := runner.cgroup.oom_killed()):
            return (f"ended by its memory limit of {obj.limits.get('memory')} bytes (the kernel's OOM killer ended "
                    f"{killed} of its processes, says its cgroup); {reason}")
        return reason
