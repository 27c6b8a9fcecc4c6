"""Making an object's launch: its definition checked and its files written by the kind-table,
its parts on other daemons started, followed and dropped (part of ObjectManager)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

from .cgroups import Cgroups
from .config import Config
from .errors import ContractError
from .ids import new_id, utc_now
from .kinds import KINDS, Launch, Preparation, parse_request
from .logs import Log
from .ports import PortAllocator
from .records import COLLECTION, JObject
from .remotes import RemotePart, Remotes
from .runner import Runner, cancel_tasks
from .states import LIVE, RemoteState
from .store import Store
from .workspaces import WorkspaceManager


class Launching:
    """ObjectManager's methods that make launches; they use its objects, runners and records."""

    config: Config
    store: Store
    workspaces: WorkspaceManager
    alloc: PortAllocator
    remotes: Remotes
    cgroups: Cgroups
    objects: dict[str, JObject]
    runners: dict[str, Runner]
    run_root: Path
    jina: str
    _advertised_host: str
    _removing: set[str]

    def _prepare(self, obj: JObject) -> Launch:
        """Validate the object's definition and write its launch files; raises on bad input."""
        run_dir = self.run_root / obj.id
        run_dir.mkdir(parents=True, exist_ok=True)
        c = self.config
        ctx = Preparation(self.workspaces.files_dir(obj.workspace_id), run_dir, obj.ports, self.alloc,
                          self.workspaces.jina(obj.workspace_id, self.jina), c.max_yaml_bytes, c.max_yaml_depth,
                          remotes={part.name: part for part in obj.remote},
                          tls_files=(str(Path(c.tls_cert).resolve()), str(Path(c.tls_key).resolve())) if c.tls_cert else None,
                          parts=not obj.limits, changes=obj.changes, envs=obj.envs)
        launch = KINDS[obj.kind].prepare(obj.spec, ctx)
        obj.protocol = launch.protocol
        obj.address = f"{self._advertised_host}:{launch.port}"
        if obj.id in self.runners:  # ports, protocol and address changed (stored as it starts)
            self.runners[obj.id].revision += 1
        return launch

    async def _prepare_with_remotes(self, obj: JObject) -> Launch:
        """Prepare, first starting on other daemons the executors that run there (again, for
        parts that no longer run there: a restart or recovery brings the whole Flow back)."""
        if obj.remote:
            obj.remote = await self.remotes.still_running(obj.remote)
        launch = self._prepare(obj)
        if not launch.remote_needed:
            return launch
        obj.remote = obj.remote + await self.remotes.deploy(launch.remote_needed, self.workspaces.files_dir(obj.workspace_id),
                                                            obj.timeout_s, obj.id)
        try:
            return self._prepare(obj)
        except BaseException:
            await self._drop_remotes(obj)
            raise

    def _follow_remotes(self, obj: JObject, runner: Runner) -> None:
        """Follow the remote parts' logs into the Flow's, and watch them: each shows in `parts`
        as last seen; one that cannot be reached is also the Flow's `error` until it answers
        again; one that ended is started again alone by the Flow's restart policy
        (`_restart_remote`) while the rest serves on."""
        shown: set[str] = set()
        restarting: dict[str, asyncio.Task] = {}  # pod id -> its restart (kept when it gave up)
        failures: dict[str, tuple[int, float]] = {}  # pod id -> failed starts in a row, when it last ran again
        runner.remote_seen = {part.pod_id: seen for part in obj.remote if (seen := runner.remote_seen.get(part.pod_id))}

        def report(part: RemotePart, seen: dict) -> bool:
            if obj.id not in self.objects or obj.state not in LIVE:
                return False
            error = obj.error
            if seen["state"] == RemoteState.UNREACHABLE:
                shown.add(error := seen["error"])
            elif obj.error in shown and not any(s["state"] == RemoteState.UNREACHABLE for pod_id, s in runner.remote_seen.items()
                                                if pod_id != part.pod_id):
                error = None
            if seen != runner.remote_seen.get(part.pod_id):
                runner.remote_seen[part.pod_id] = seen
                self._changed(obj)
            if error != obj.error:
                obj.error = error
                self._save(obj)
            return True

        def ended(part: RemotePart, pod: dict) -> bool:
            if obj.id not in self.objects or obj.state not in LIVE:
                return True  # nothing runs that it could end
            if runner.child is not None and part.pod_id not in restarting:  # not still starting, nor restarting it
                task = asyncio.create_task(self._restart_remote(obj, runner, part, pod, failures), name=f"restart {part.pod_id}")
                restarting[part.pod_id] = task
                runner.followers.append(task)  # stopped with the Flow
                task.add_done_callback(lambda t: t.cancelled() or not t.result() or restarting.pop(part.pod_id, None))
            return False

        runner.followers = self.remotes.follow_all(obj.remote, runner.log, report, ended)

    async def _remake_remotes(self, obj: JObject, runner: Runner) -> str | None:
        """Before a Flow is started again by its restart policy: its remote parts that no
        longer run made again, and all followed anew; the reason when that cannot be done."""
        if not obj.remote:
            return None
        try:
            runner.launch = await self._prepare_with_remotes(obj)
        except ContractError as exc:
            return exc.message
        await cancel_tasks(runner.followers)
        self._follow_remotes(obj, runner)
        return None

    async def _drop_remotes(self, obj: JObject) -> None:
        """Delete the object's parts on other daemons (their workspaces too, unless in use)."""
        runner = self.runners.get(obj.id)
        for task in runner.followers if runner else []:
            task.cancel()
        # Flows deleted at the same time each try their shared workspace (its daemon refuses
        # while one of their Pods still runs there), so the last one removes it.
        users = [o for o in self.objects.values() if o is not obj and o.id not in self._removing]
        await self.remotes.drop(obj.remote, in_use={p.placed for o in users for p in o.remote})
        obj.remote = []
        if obj.id in self.objects:  # not for a Flow being refused before it had a record
            self._save(obj)

    async def create(self, kind_name: str, body: dict, wait: bool = True) -> JObject:
        kind = KINDS[kind_name]
        request = parse_request(kind, body)
        self.cgroups.check(request.limits)
        await self.workspaces.ready_for_objects(request.workspace_id, wait)
        obj = JObject(
            id=new_id(kind.name), kind=kind.name, workspace_id=request.workspace_id, spec=request.spec,
            envs=request.envs, restart=request.restart, timeout_s=request.timeout_s or self.config.start_timeout_s,
            created_at=utc_now(), limits=request.limits, owner=request.owner,
        )
        self._check_capacity(obj)
        try:
            launch = await self._prepare_with_remotes(obj)
            try:
                # Stored before it is known: what cannot be stored (or a full disk) refuses the
                # object here, and a known object always has a record.
                self.store.save(COLLECTION, dataclasses.asdict(obj))
            except BaseException:
                await self._drop_remotes(obj)
                raise
        except BaseException:
            self.alloc.release(list(obj.ports.values()))
            shutil.rmtree(self.run_root / obj.id, ignore_errors=True)
            raise
        self.objects[obj.id] = obj
        self.runners[obj.id] = Runner(log=Log.from_config(self.config, obj.id), launch=launch)
        return await self._begin(obj, wait)
