"""Flows, Pods and Peas: one manager for the three kinds, their state machine and restart policy.

States (as supervisord's, in the contract's words), every transition TRANSITIONS allows:
    starting -> ready       it serves (Jina's ready line, then every port answers)
    starting -> failed      it never got ready; nothing is left running
    starting -> stopping    stopped (delete, restart, shutdown) before it was ready
    ready    -> exited      it ended by itself (or part of it died)
    ready    -> stopping    stopped while serving
    stopping -> stopped     its whole process tree is gone
    stopped  -> starting    restarted, or started again after a daemon restart
    stopped  -> stopping    deleted or restarted again (a stop of what is stopped ends stray processes)
    stopped  -> failed      it cannot be started again after a daemon restart
    exited   -> starting    its restart policy takes it back (after a growing back-off)
    exited   -> failed      the policy gave up after too many restarts in a row
    exited   -> stopping    deleted or restarted
    failed   -> starting    restarted
    failed   -> stopping    deleted or restarted
`_set_state` is the one place that makes a transition: it checks it, stores the record and
tells subscribers. Records survive daemon restarts; `recover` takes back the children a previous
run left under their keepers (live restore: same pids, same ports, reading their output on),
ends what it cannot take back and starts again every object that should be running, with its
old id and ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import shutil
import socket
import sys
import time
from typing import AsyncIterator

import psutil

from .config import Config
from .events import Broadcast
from .errors import Conflict, FailedToStart, JinadError, NotFound
from .ids import new_id, utc_now
from .kinds import KINDS, Context, Launch, parse_request
from .logs import Log
from .ports import PortAllocator, is_free
from .remotes import RemotePart, Remotes
from .states import LIVE, TERMINAL, RestartPolicy, State
from .store import Store, from_record
from .supervision import Child, adopt, end_processes, find_keepers, find_marked, sample_children, spawn, tree, wait_ready
from .workspaces import WorkspaceManager

log = logging.getLogger(__name__)
COLLECTION = "objects"
TRANSITIONS = {
    State.STARTING: {State.READY, State.FAILED, State.STOPPING},
    State.READY: {State.EXITED, State.STOPPING},
    State.STOPPING: {State.STOPPED},
    State.STOPPED: {State.STARTING, State.STOPPING, State.FAILED},
    State.FAILED: {State.STARTING, State.STOPPING},
    State.EXITED: {State.STARTING, State.FAILED, State.STOPPING},
}
BACKOFF_RESET_S = 30.0  # ready this long, and earlier failures no longer count toward giving up
BACKOFF_MAX_S = 30.0
backoff = asyncio.sleep  # the wait between restarts: a name of its own, so tests can skip it
LOG_TAIL_LINES = 30
CANCEL_ATTEMPTS = 10
NO_RESOURCES = {"cpu_percent": 0.0, "memory_rss": 0, "processes": 0}


@dataclasses.dataclass
class JObject:
    id: str
    kind: str
    workspace_id: str
    spec: dict  # the kind's request fields, kept to start it again
    envs: dict
    restart: str
    timeout_s: float
    created_at: str
    state: str = State.STARTING
    pid: int | None = None
    address: str | None = None
    protocol: str | None = None
    ports: dict = dataclasses.field(default_factory=dict)
    started_at: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    error: str | None = None
    remote: list[RemotePart] = dataclasses.field(default_factory=list)  # stored as dicts of its fields

    def to_json(self, resources: dict) -> dict:
        # Plain getattr, not dataclasses.asdict: this is on GET's hot path, asdict deep-copies.
        return {**{name: getattr(self, name) for name in PUBLIC_FIELDS}, "resources": resources,
                "remote": [dataclasses.asdict(part) for part in self.remote]}


PUBLIC_FIELDS = [f.name for f in dataclasses.fields(JObject) if f.name not in ("spec", "envs", "timeout_s", "remote")]


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
    resources: dict = dataclasses.field(default_factory=lambda: dict(NO_RESOURCES))
    # Bumped at every change of the object or of its resource sample: senders that keep its
    # JSON (api/objects.py) know from it when to encode again.
    revision: int = 0

    def settle(self, reason: str | None) -> None:
        if self.start_result and not self.start_result.done():
            self.start_result.set_result(reason)


async def _cancel(tasks: list[asyncio.Task]) -> None:
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


def _object_from_record(record: dict) -> JObject:
    """An object from its stored record; ValueError/TypeError for one of the wrong shape."""
    obj = from_record(JObject, {**record, "remote": []})
    if not isinstance(record.get("remote", []), list):
        raise ValueError("remote is not a list")
    obj.remote = [RemotePart.from_record(part) for part in record.get("remote", [])]
    if obj.kind not in KINDS or obj.state not in State.values() or obj.restart not in RestartPolicy.values():
        raise ValueError(f"kind {obj.kind!r}, state {obj.state!r} or restart {obj.restart!r} is unknown")
    if not obj.id.startswith(f"j{obj.kind}-"):
        raise ValueError(f"id {obj.id!r} is not a {obj.kind}'s")
    if not all(isinstance(port, int) and 0 < port < 65536 for port in obj.ports.values()):
        raise ValueError(f"ports {obj.ports!r} are not all port numbers")
    if not 0 < obj.timeout_s < math.inf:
        raise ValueError(f"timeout_s {obj.timeout_s!r} is not a positive, finite number")
    return obj


class ObjectManager:
    def __init__(self, config: Config, store: Store, workspaces: WorkspaceManager) -> None:
        self.config = config
        self.store = store
        self.workspaces = workspaces
        self.home = str(config.home)
        self.run_root = config.home / "run"
        self.log_root = config.home / "logs"
        self.alloc = PortAllocator(config.ports)
        self.jina = jina_executable()
        self.objects: dict[str, JObject] = {}
        self.runners: dict[str, Runner] = {}
        self._events = Broadcast()
        self._unsaved: set[str] = set()
        self.remotes = Remotes(config.tokens_by_remote)
        # The host in objects' addresses: the one the daemon listens on, or its name when it
        # listens on every address.
        self._advertised_host = config.host if config.host not in ("0.0.0.0", "::", "") else socket.gethostname()

    # ---- reading ------------------------------------------------------------------------------

    def get(self, kind: str, object_id: str) -> JObject:
        obj = self.objects.get(object_id)
        if obj is None or obj.kind != kind:
            raise NotFound(f"no {kind} {object_id!r} on this daemon")
        return obj

    def find(self, object_id: str) -> JObject:
        try:
            return self.objects[object_id]
        except KeyError:
            raise NotFound(f"no object {object_id!r} on this daemon") from None

    def list(self, kind: str) -> list[JObject]:
        return [obj for obj in self.objects.values() if obj.kind == kind]

    def resources_of(self, obj: JObject) -> dict:
        """The object's latest resource sample (a new dict at each sample)."""
        return self.runners[obj.id].resources

    def revision_of(self, obj: JObject) -> int:
        """A number that changes whenever `to_json(obj)` would."""
        return self.runners[obj.id].revision

    def to_json(self, obj: JObject) -> dict:
        return obj.to_json(self.resources_of(obj))

    def log_of(self, object_id: str) -> Log:
        self.find(object_id)
        return self.runners[object_id].log

    def is_finished(self, object_id: str) -> bool:
        """Has the object ended for good (no process, and no restart coming)?"""
        obj = self.objects.get(object_id)
        if obj is None:
            return True
        task = self.runners[obj.id].task
        return obj.state in TERMINAL and (task is None or task.done())

    def has_live_objects(self, workspace_id: str) -> bool:
        return any(o.workspace_id == workspace_id and o.state in LIVE for o in self.objects.values())

    def state_counts(self) -> dict:
        counts: dict[str, dict[str, int]] = {kind.plural: {} for kind in KINDS.values()}
        for obj in self.objects.values():
            states = counts[KINDS[obj.kind].plural]
            states[obj.state] = states.get(obj.state, 0) + 1
        return counts

    def events(self) -> AsyncIterator[dict]:
        """Every state change of every object from now on."""
        return self._events.subscribe()

    # ---- state ------------------------------------------------------------------------------

    def _save(self, obj: JObject) -> None:
        """Store the record; on a full disk keep going and retry later (`save_pending`), so a
        supervisor never dies of it and the record catches up once space is back. Every change
        of an object is stored, so this is also where its revision is bumped."""
        if obj.id in self.runners:
            self.runners[obj.id].revision += 1
        try:
            self.store.save(COLLECTION, dataclasses.asdict(obj))
            self._unsaved.discard(obj.id)
        except OSError as exc:
            if obj.id not in self._unsaved:
                log.error("could not store %s (%s); will retry", obj.id, exc)
            self._unsaved.add(obj.id)

    def save_pending(self) -> None:
        for object_id in list(self._unsaved):
            if object_id in self.objects:
                self._save(self.objects[object_id])
            else:
                self._unsaved.discard(object_id)

    def _set_state(self, obj: JObject, state: str, **fields) -> None:
        if state not in TRANSITIONS[obj.state] and state != obj.state:
            raise RuntimeError(f"{obj.id}: no transition {obj.state} -> {state}")
        obj.state = state
        for name, value in fields.items():
            setattr(obj, name, value)
        if state not in LIVE:  # no process left: its last sample would be shown as if it ran
            self.runners[obj.id].resources = dict(NO_RESOURCES)  # (_save bumps the revision)
        self._save(obj)
        self.runners[obj.id].log.note_state(state, obj.exit_code)
        log.info("%s %s: %s%s", obj.kind, obj.id, state, f" ({obj.error})" if state == State.FAILED else "")
        self._events.publish({"id": obj.id, "kind": obj.kind, "state": state, "exit_code": obj.exit_code,
                              "error": obj.error, "ts": utc_now()})

    # ---- making and starting ----------------------------------------------------------------

    def _prepare(self, obj: JObject) -> Launch:
        """Validate the object's definition and write its launch files; raises on bad input."""
        run_dir = self.run_root / obj.id
        run_dir.mkdir(parents=True, exist_ok=True)
        c = self.config
        ctx = Context(self.workspaces.files_dir(obj.workspace_id), run_dir, obj.ports, self.alloc,
                      self.workspaces.jina(obj.workspace_id, self.jina), c.max_yaml_bytes, c.max_yaml_depth,
                      remotes={part.name: part for part in obj.remote})
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
                                                            obj.timeout_s)
        try:
            return self._prepare(obj)
        except BaseException:
            await self._drop_remotes(obj)
            raise

    def _follow_remotes(self, obj: JObject, runner: Runner) -> None:
        def ended(reason: str) -> None:
            if obj.id in self.objects and obj.state in LIVE:
                obj.error = reason
                self._save(obj)

        runner.followers = self.remotes.follow_all(obj.remote, runner.log, ended)

    async def _drop_remotes(self, obj: JObject) -> None:
        """Delete the object's parts on other daemons (their workspaces too, unless in use)."""
        runner = self.runners.get(obj.id)
        for task in runner.followers if runner else []:
            task.cancel()
        await self.remotes.drop(obj.remote, in_use={p.placed for o in self.objects.values() if o is not obj for p in o.remote})
        obj.remote = []
        if obj.id in self.objects:  # not for a Flow being refused before it had a record
            self._save(obj)

    async def create(self, kind_name: str, body: dict, wait: bool = True) -> JObject:
        kind = KINDS[kind_name]
        request = parse_request(kind, body)
        await self.workspaces.ready_for_objects(request.workspace_id, wait)
        obj = JObject(
            id=new_id(kind.name), kind=kind.name, workspace_id=request.workspace_id, spec=request.spec,
            envs=request.envs, restart=request.restart, timeout_s=request.timeout_s or self.config.start_timeout_s,
            created_at=utc_now(),
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
        self.runners[obj.id] = Runner(log=self._open_log(obj.id), launch=launch)
        return await self._begin(obj, wait)

    def _open_log(self, object_id: str) -> Log:
        c = self.config
        return Log(self.log_root / f"{object_id}.log", c.log_ring_lines, c.log_ring_bytes, c.log_file_max_bytes, c.log_file_backups)

    def _check_capacity(self, starting: JObject) -> None:
        running = sum(1 for o in self.objects.values() if o.state in LIVE and o is not starting)
        if running >= self.config.max_running_objects:
            raise Conflict(f"this daemon already runs {running} objects, its limit; delete some first")

    async def _begin(self, obj: JObject, wait: bool) -> JObject:
        """Start the object's supervising task; with `wait`, answer once it is ready or failed."""
        runner = self.runners[obj.id]
        runner.start_result = asyncio.get_running_loop().create_future()
        runner.starts += 1
        runner.task = asyncio.create_task(self._supervise(obj, runner), name=f"supervise {obj.id}")
        # Followers end once the object is finished, which needs the task done: tell them.
        runner.task.add_done_callback(lambda _: runner.log.wake())
        self._follow_remotes(obj, runner)
        return await self._outcome(obj, runner.start_result, wait)

    async def _outcome(self, obj: JObject, start_result: asyncio.Future, wait: bool) -> JObject:
        """The object once that start is ready (or at once without `wait`); FailedToStart if not."""
        if wait:
            reason = await asyncio.shield(start_result)
            if reason is not None:
                tail = [entry.line for entry in self.runners[obj.id].log.tail(LOG_TAIL_LINES)] if obj.id in self.runners else []
                raise FailedToStart(f"{obj.kind} {obj.id} failed to start: {reason}", id=obj.id, log_tail=tail)
        return obj

    async def _start_once(self, obj: JObject, runner: Runner) -> tuple[str | None, int | None]:
        """Spawn and wait for readiness: (None, None) when ready, else (reason, exit code)."""
        launch = runner.launch
        if runner.child is None:  # else taken back from a previous run of the daemon, still starting
            taken = [port for port in launch.ports.values() if not is_free(port)]
            if taken:
                return f"port(s) {', '.join(map(str, taken))} already in use", None
            try:
                runner.child = await spawn(
                    launch.argv, self.workspaces.files_dir(obj.workspace_id), self.workspaces.child_env(obj.workspace_id, obj.envs),
                    runner.log, self.config.log_max_line_bytes, obj.id, self.home, launch.ready_line,
                )
            except (OSError, ValueError) as exc:  # ValueError: an argument the OS cannot take
                return f"could not run {launch.argv[0]}: {exc}", None
            obj.pid = runner.child.pid
            self._save(obj)
        reason = await wait_ready(runner.child, "127.0.0.1", launch.probes, obj.timeout_s)
        if reason is None:
            return None, None
        code = await runner.child.stop(self.config.stop_grace_s)
        reason = runner.child.explain(reason)
        runner.child = None
        return reason, code

    async def _check_adopted(self, obj: JObject, runner: Runner) -> tuple[str | None, int | None]:
        """A child taken back as ready: it stays `ready` if its ports answer; else it is ended,
        `exited`, and its restart policy decides."""
        if runner.child.has_exited:  # it ended while no daemon ran: (None, None), wait() says how
            return None, None
        reason = await wait_ready(runner.child, "127.0.0.1", runner.launch.probes, obj.timeout_s)
        if reason is None:
            return None, None
        code = await runner.child.stop(self.config.stop_grace_s)
        reason = runner.child.explain(f"taken back after a daemon restart, {reason}")
        runner.child = None
        self._set_state(obj, State.EXITED, exit_code=code, pid=None, error=reason)
        return reason, code

    def _should_restart(self, obj: JObject, failed: bool) -> bool:
        return obj.restart == RestartPolicy.ALWAYS or (obj.restart == RestartPolicy.ON_FAILURE and failed)

    async def _supervise(self, obj: JObject, runner: Runner) -> None:
        """Run `_live`; should it raise (a fault of the daemon's, or of the OS), the object is
        `failed` with that error and its processes are ended, never left `starting` for good."""
        try:
            await self._live(obj, runner)
        except Exception as exc:
            log.exception("supervising %s failed", obj.id)
            reason = f"the daemon could not supervise it: {type(exc).__name__}: {exc}"
            if runner.child is not None:
                await runner.child.stop(self.config.stop_grace_s)
                runner.child = None
            if obj.state == "ready":
                self._set_state(obj, "exited", pid=None, error=reason)
            if obj.state != "failed":
                self._set_state(obj, "failed", pid=None, error=reason)
            runner.settle(reason)

    async def _live(self, obj: JObject, runner: Runner) -> None:
        """One object's life: start, wait for its exit, restart by policy with growing back-off.
        A child taken back from a previous run of the daemon (`runner.child` already set) is
        not started: a ready one is checked (its ports answer), a starting one waited for."""
        failures = 0
        adopted = runner.child is not None
        first = not (adopted and obj.state == State.READY)
        while True:
            if adopted and obj.state == State.READY:
                reason, code = await self._check_adopted(obj, runner)
            else:
                if not adopted:
                    self._set_state(obj, State.STARTING, pid=None, exit_code=None, error=None)
                reason, code = await self._start_once(obj, runner)
            adopted = False
            if reason is None:
                if obj.state != State.READY:
                    self._set_state(obj, State.READY, started_at=utc_now())
                runner.settle(None)
                first = False
                ready_at = time.monotonic()
                code, reason = await runner.child.wait(self.config.stop_grace_s, [port for port, _ in runner.launch.probes])
                # An object that ended by itself always says why, with the last errors it printed.
                error = runner.child.explain(reason or runner.child.ended())
                runner.child = None
                self._set_state(obj, State.EXITED, exit_code=code, pid=None, error=error)
                if time.monotonic() - ready_at > BACKOFF_RESET_S:
                    failures = 0
                # Ended by the daemon because part of it died: a failure, whatever the exit code.
                if not self._should_restart(obj, failed=code != 0 or reason is not None):
                    return
                reason = error
            elif first or not self._should_restart(obj, failed=True):
                self._set_state(obj, State.FAILED, error=reason, exit_code=code, pid=None)
                await self._drop_remotes(obj)  # a Flow that cannot start takes its remote parts along
                runner.settle(reason)
                return
            if failures >= self.config.restart_max_retries:
                self._set_state(obj, State.FAILED, pid=None, error=f"gave up after {failures} restarts in a row; the last: {reason}")
                return
            failures += 1
            await backoff(min(2 ** (failures - 1), BACKOFF_MAX_S))
            obj.restarts += 1

    # ---- stopping -----------------------------------------------------------------------------

    async def _halt(self, obj: JObject, runner: Runner) -> None:
        """Stop the supervising task and end the whole process tree; the state ends `stopped`."""
        await _cancel([task for task in [runner.task, *runner.followers] if task])
        runner.settle("it was stopped before it was ready")
        live = obj.state in LIVE or runner.child is not None
        if live:
            self._set_state(obj, State.STOPPING)
        code = await runner.child.stop(self.config.stop_grace_s) if runner.child else obj.exit_code
        runner.child = None
        # Whatever the state: a process spawned just as the task was cancelled, or one that left
        # the group with setsid() and outlived its parent, is found by its markers.
        await end_processes(await asyncio.to_thread(tree, -1, obj.id, self.home), self.config.stop_grace_s)
        if live:
            self._set_state(obj, State.STOPPED, exit_code=code, pid=None)

    async def restart(self, kind: str, object_id: str, wait: bool = True) -> JObject:
        """Stop and start again; a restart asked for while another one runs joins it (as
        systemd merges jobs): any start begun after it was asked satisfies it, rather than the
        second halting the first mid-start and both answering 422."""
        obj = self.get(kind, object_id)
        runner = self.runners[obj.id]
        asked_at = runner.starts
        async with runner.lock:
            if obj.id not in self.objects:
                raise NotFound(f"no {kind} {object_id!r} on this daemon")
            if runner.starts != asked_at:
                return await self._outcome(obj, runner.start_result, wait)
            self._check_capacity(obj)
            # Prepared before the halt: files changed since are picked up, and one that is now
            # refused (bad YAML, a taken port) leaves the running object as it is.
            launch = await self._prepare_with_remotes(obj)
            await self._halt(obj, runner)
            runner.launch = launch
            await self._begin(obj, wait=False)
            start_result = runner.start_result
        return await self._outcome(obj, start_result, wait)

    async def delete(self, kind: str, object_id: str) -> JObject:
        return await self._remove(self.get(kind, object_id))

    async def _remove(self, obj: JObject) -> JObject:
        runner = self.runners[obj.id]
        async with runner.lock:
            if obj.id not in self.objects:
                return obj
            await self._halt(obj, runner)
            await self._drop_remotes(obj)
            self.store.delete(COLLECTION, obj.id)
            del self.objects[obj.id]
            del self.runners[obj.id]
            self.alloc.release(list(obj.ports.values()))
            runner.log.remove()
            shutil.rmtree(self.run_root / obj.id, ignore_errors=True)
        return obj

    async def delete_in_workspace(self, workspace_id: str) -> None:
        doomed = [obj for obj in self.objects.values() if obj.workspace_id == workspace_id]
        await asyncio.gather(*(self._remove(obj) for obj in doomed))

    # ---- daemon life --------------------------------------------------------------------------

    async def recover(self) -> None:
        """Take back the children a previous run left under their keepers (live restore), end
        what cannot be taken back, then start again what should be running."""
        keepers = await asyncio.to_thread(find_keepers, self.home)
        leftovers = await asyncio.to_thread(find_marked, self.home)
        taken: set[int] = set()

        def build(record: dict) -> JObject:
            obj = _object_from_record(record)
            if clash := taken & set(obj.ports.values()):  # two records cannot both own a port
                raise ValueError(f"port(s) {sorted(clash)} belong to another object's record")
            taken.update(obj.ports.values())
            return obj

        for obj in self.store.load_all(COLLECTION, build):
            self.objects[obj.id] = obj
            self.runners[obj.id] = Runner(log=self._open_log(obj.id))
            self.alloc.held.update(obj.ports.values())
            self.remotes.remember(obj.remote)
        adopted = []
        for obj in self.objects.values():
            keeper = keepers.pop(obj.id, None)
            if keeper is None or obj.state not in (State.READY, State.STARTING):
                continue
            child = await adopt(keeper, obj.pid, obj.id, self.home, self.runners[obj.id].log, self.config.log_max_line_bytes)
            if child is None:
                keepers[obj.id] = keeper  # not the one recorded: ended below with the rest
                continue
            self.runners[obj.id].child = child
            leftovers.pop(obj.id, None)
            adopted.append(obj)
        if adopted:
            log.info("took back %d object(s) a previous run left running", len(adopted))
        if leftovers:
            log.warning("ending %d object(s) left running by a previous run", len(leftovers))
        await asyncio.gather(*(end_processes(procs, self.config.stop_grace_s) for procs in leftovers.values()))
        for keeper in keepers.values():  # whatever it kept is of no object's now
            with contextlib.suppress(psutil.Error):
                keeper.kill()
        for obj in adopted:
            if obj.pid is None:  # it was starting, and its pid not yet stored
                obj.pid = self.runners[obj.id].child.pid
                self._save(obj)
            await self._recover_one(obj)
        for obj in list(self.objects.values()):
            if obj in adopted:
                continue
            should_run = obj.state in LIVE | {State.STOPPED} or (
                obj.state == State.EXITED and self._should_restart(obj, failed=obj.exit_code != 0 or obj.error is not None)
            )
            if obj.state in (State.READY, State.STARTING):
                self._set_state(obj, State.STOPPING)
            if obj.state == State.STOPPING:
                self._set_state(obj, State.STOPPED, pid=None)
            if should_run:
                await self._recover_one(obj)

    async def _recover_one(self, obj: JObject) -> None:
        runner = self.runners[obj.id]
        try:
            self.workspaces.get(obj.workspace_id)
            runner.launch = await self._prepare_with_remotes(obj)
        except Exception as exc:  # whatever it is, the daemon starts, with this object failed
            reason = exc.message if isinstance(exc, JinadError) else f"{type(exc).__name__}: {exc}"
            if runner.child is not None:  # taken back, but it cannot be described any more
                await runner.child.stop(self.config.stop_grace_s)
                runner.child = None
                self._set_state(obj, State.STOPPING)
                self._set_state(obj, State.STOPPED, pid=None)
            self._set_state(obj, State.FAILED, error=f"could not start it again after a daemon restart: {reason}")
            return
        await self._begin(obj, wait=False)

    async def sample_resources(self) -> None:
        """Refresh `resources` of every running object, one scan of the process table for all."""
        running = [runner for runner in self.runners.values() if runner.child]
        samples = await sample_children([runner.child for runner in running])
        for runner in running:
            if runner.child in samples:  # not a sample of a child that ended meanwhile
                runner.resources = samples[runner.child]
                runner.revision += 1

    def tend_logs(self) -> None:
        for runner in self.runners.values():
            runner.log.tend()

    async def shutdown(self) -> None:
        """Stop every child; each is `stopped`, which the next start of the daemon takes as
        'should be running' (only DELETE removes an object). With `live_restore`, leave them
        running under their keepers instead, for the next daemon to take back."""
        if self.config.live_restore:
            await _cancel([task for runner in self.runners.values() for task in [runner.task, *runner.followers] if task])
            for runner in self.runners.values():
                if runner.child is not None:
                    runner.child.detach()
            log.info("live restore: %d object(s) left running for the next daemon",
                     sum(1 for runner in self.runners.values() if runner.child is not None))
        else:
            await asyncio.gather(*(self._halt(obj, self.runners[obj.id]) for obj in self.objects.values()))
        for runner in self.runners.values():
            runner.log.close()
        # Remote parts keep running under their own daemons; the Flows use them again at start.
        await self.remotes.close()
