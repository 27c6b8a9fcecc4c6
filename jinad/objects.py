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

Beside the state machine, in modules of their own: the record (records.py), what lives in
memory per object (runner.py), the table of objects that readers and housekeeping use
(table.py, the base class), one start of a child and its readiness (starting.py), making
launches with their remote parts and `create` (launching.py), `recover` (recovery.py) and a
Flow's parts, each executor replica a Pea the Flow owns, with rolling updates (parts.py); the
last three are parts of ObjectManager. A Flow's state is its gateway's; `degraded` says when a
part of a ready Flow is not ready.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time

from .cgroups import Cgroups
from .config import Config
from .errors import Conflict, FailedToStart, NotFound
from .ids import utc_now
from .launching import Launching
from .parts import Parts
from .ports import PortAllocator
from .records import COLLECTION, DELETING, JObject
from .recovery import Recovery
from .remotes import RemotePart, Remotes
from .runner import NO_RESOURCES, Runner, cancel_tasks, jina_executable
from .states import LIVE, RemoteState, RestartPolicy, State
from .store import Store
from .tls import remote_context
from .urls import host_name
from .starting import Starter
from .supervision import end_processes, tree
from .table import ObjectTable
from .workspaces import WorkspaceManager

log = logging.getLogger(__name__)
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


class ObjectManager(ObjectTable, Launching, Recovery, Parts):
    def __init__(self, config: Config, store: Store, workspaces: WorkspaceManager) -> None:
        super().__init__(store)
        self.config = config
        self.workspaces = workspaces
        self.home = str(config.home)
        self.run_root = config.home / "run"
        self.alloc = PortAllocator(config.ports)
        self.jina = jina_executable()
        self.remotes = Remotes(config.tokens_by_remote,
                               remote_context(config.remote_tls_ca, config.remote_tls_cert, config.remote_tls_key), store)
        self.cgroups = Cgroups(self.home)
        self.cgroups.remove_empty()
        self.starter = Starter(config, workspaces, self.cgroups, self._save)
        self._updating: dict[str, asyncio.Task] = {}  # a Flow's id -> its rolling update's task
        self._removing: set[str] = set()  # objects being deleted: their remote workspaces are no one's use
        # The host in objects' stored addresses (the API shows each client the host it dialled):
        # advertise_host, else the one the daemon listens on, or its name when it listens on all.
        self._advertised_host = host_name(config.advertise_host) if config.advertise_host else (
            config.host if config.host not in ("0.0.0.0", "::", "") else socket.gethostname())

    # ---- state ------------------------------------------------------------------------------

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

    def _check_capacity(self, starting: JObject) -> None:
        if starting.part_of:  # a part counts as its Flow
            return
        running = sum(1 for o in self.objects.values() if o.state in LIVE and o is not starting and not o.part_of)
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
        """Start the child; a Flow's gateway beside its parts, as `jina flow` starts its runtimes
        together: the gateway waits for them itself and says it is ready once they serve. A part
        that cannot start ends the gateway's start at once, rather than at its timeout."""
        if not runner.launch.parts:
            return await self.starter.start_once(obj, runner)
        parts = asyncio.create_task(self._ensure_parts(obj, runner.launch), name=f"parts of {obj.id}")
        gateway = asyncio.create_task(self.starter.start_once(obj, runner), name=f"gateway of {obj.id}")
        try:
            await asyncio.wait({parts, gateway}, return_when=asyncio.FIRST_COMPLETED)
            if parts.done() and (reason := parts.result()) is not None:
                await cancel_tasks([gateway])
                if runner.child is not None:
                    code = await runner.child.stop(self.config.stop_grace_s)
                    runner.child = None
                    return reason, code
                return reason, None
            reason, code = await gateway
            if reason is None and (reason := await parts) is not None:  # a replica failed, another serves
                code = await runner.child.stop(self.config.stop_grace_s)
                runner.child = None
            return reason, code
        finally:
            await cancel_tasks([parts, gateway])

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
            if obj.state == State.READY:
                self._set_state(obj, State.EXITED, pid=None, error=reason)
            if obj.state != State.FAILED:
                self._set_state(obj, State.FAILED, pid=None, error=reason)
            runner.settle(reason)

    async def _live(self, obj: JObject, runner: Runner) -> None:
        """One object's life: start, wait for its exit, restart by policy with growing back-off.
        A child taken back from a previous run of the daemon (`runner.child` already set) is
        not started: a ready one is checked (its ports answer), a starting one waited for."""
        failures = 0
        restarts_at_start = obj.restarts  # past it, each start is the restart policy's
        adopted = runner.child is not None
        first = not (adopted and obj.state == State.READY)
        while True:
            if adopted and obj.state == State.READY:
                reason, code = await self.starter.check_adopted(obj, runner)
                if reason is not None:
                    self._set_state(obj, State.EXITED, exit_code=code, pid=None, error=reason)
            else:
                if not adopted:
                    self._set_state(obj, State.STARTING, pid=None, exit_code=None, error=None)
                reason, code = (await self._remake_remotes(obj, runner) if obj.restarts > restarts_at_start else None), None
                if reason is None:
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
                error = self.starter.explain(obj, runner, reason or runner.child.ended())
                runner.child = None
                self._set_state(obj, State.EXITED, exit_code=code, pid=None, error=error)
                if time.monotonic() - ready_at > BACKOFF_RESET_S:
                    failures = 0
                # Ended by the daemon because part of it died: a failure, whatever the exit code.
                if not self._should_restart(obj, failed=code != 0 or reason is not None):
                    await self._halt_parts(obj)  # a Flow that ended for good ends its replicas too
                    return
                reason = error
            elif obj.state == State.EXITED and not self._should_restart(obj, failed=True):
                await self._halt_parts(obj)
                return  # taken back, found dead: it ended by itself, and no policy starts it again
            elif first or not self._should_restart(obj, failed=True):
                self._set_state(obj, State.FAILED, error=reason, exit_code=code, pid=None)
                await self._drop_remotes(obj)  # a Flow that cannot start takes its parts along
                await self._drop_parts(obj, release_spares=True)
                runner.settle(reason)
                return
            if failures >= self.config.restart_max_retries:
                self._set_state(obj, State.FAILED, pid=None, error=f"gave up after {failures} restarts in a row; the last: {reason}")
                await self._halt_parts(obj)
                return
            failures += 1
            await backoff(min(2 ** (failures - 1), BACKOFF_MAX_S))
            obj.restarts += 1

    async def _restart_remote(self, obj: JObject, runner: Runner, part: RemotePart, pod: dict,
                              failures: dict[str, tuple[int, float]]) -> bool:
        """A Flow's part on another daemon that ended, started again there alone by the Flow's
        restart policy, with back-off growing as for `_live` (`failures` keeps its count): the
        same Pod, so on the same ports the gateway lists, which serves with the rest meanwhile.
        A Pod its daemon no longer has is made anew as the Flow's gateway is started again, to
        learn the new Pod's ports (`_live`; its other parts run on). False when it is left ended."""
        def tell(line: str) -> None:
            runner.log.append("stderr", [line])
            runner.log.flush()

        code = pod.get("exit_code")
        reason = f"remote executor {part.name!r} on {part.jinad} is {pod['state']}" + (f" (exit code {code})" if code is not None else "")
        if not self._should_restart(obj, failed=pod["state"] != State.EXITED or code != 0):
            tell(f"{reason}; the Flow's restart policy ({obj.restart}) leaves it so")
            return False
        if pod["state"] == RemoteState.MISSING:
            tell(f"{reason}; making it again, and the gateway with it")
            if runner.child is not None:
                runner.child.fault = reason
            return False
        count, ran_at = failures.get(part.pod_id, (0, 0.0))
        count = 0 if time.monotonic() - ran_at > BACKOFF_RESET_S else count
        while count < self.config.restart_max_retries:
            count += 1
            tell(f"{reason}; starting it again there (try {count})")
            await backoff(min(2 ** (count - 1), BACKOFF_MAX_S))
            try:
                await self.remotes.restart(part)
            except FailedToStart as exc:
                reason = exc.message
                continue
            failures[part.pod_id] = (count, time.monotonic())
            part.restarts += 1
            self._save(obj)
            return True
        tell(f"gave up starting remote executor {part.name!r} again after {count} restarts in a row; the last: {reason}")
        return False

    # ---- stopping -----------------------------------------------------------------------------

    async def _halt(self, obj: JObject, runner: Runner) -> None:
        """Stop the supervising task and end the whole process tree; the state ends `stopped`."""
        await cancel_tasks([task for task in [runner.task, *runner.followers] if task])
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
            await self._halt_parts(obj)  # started again with the Flow, as it is prepared now
            runner.launch = launch
            await self._begin(obj, wait=False)
            start_result = runner.start_result
        return await self._outcome(obj, start_result, wait)

    async def delete(self, kind: str, object_id: str) -> JObject:
        obj = self.get(kind, object_id)
        if obj.part_of is not None:
            raise Conflict(f"{obj.id} is replica {obj.replica} of executor {obj.part!r} of flow {obj.part_of}: "
                           f"scale it with PATCH /flows/{obj.part_of}/executors/{obj.part}, or delete the Flow")
        return await self._remove(obj)

    async def _remove(self, obj: JObject) -> JObject:
        runner = self.runners[obj.id]
        if update := self._updating.get(obj.id):  # a Flow deleted mid-update: the update stops here
            await cancel_tasks([update])
        async with runner.lock:
            if obj.id not in self.objects:
                return obj
            # Noted first: a daemon killed during the stop finishes the delete at its next start
            # (recovery.py) instead of starting the object again.
            (self.run_root / obj.id).mkdir(parents=True, exist_ok=True)
            (self.run_root / obj.id / DELETING).touch()
            self._removing.add(obj.id)
            try:
                await self._halt(obj, runner)
                await self._drop_remotes(obj)
            finally:
                self._removing.discard(obj.id)
            await self._drop_parts(obj)
            self.store.delete(COLLECTION, obj.id)
            self.cgroups.remove(obj.id)
            del self.objects[obj.id]
            del self.runners[obj.id]
            if obj.part_of is None:  # a part's port stays its Flow's
                self.alloc.release(list(obj.ports.values()))
            runner.log.remove()
            shutil.rmtree(self.run_root / obj.id, ignore_errors=True)
        return obj

    async def delete_in_workspace(self, workspace_id: str) -> None:
        doomed = [obj for obj in self.objects.values() if obj.workspace_id == workspace_id and obj.part_of is None]
        await asyncio.gather(*(self._remove(obj) for obj in doomed))

    # ---- daemon life --------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop every child; each is `stopped`, which the next start of the daemon takes as
        'should be running' (only DELETE removes an object). With `live_restore`, leave them
        running under their keepers instead, for the next daemon to take back."""
        # Rolling updates first: one would start a replica again while it is being stopped.
        # (The next start puts back what an interrupted update changed: recovery.py.)
        await cancel_tasks(list(self._updating.values()))
        if self.config.live_restore:
            await cancel_tasks([task for runner in self.runners.values() for task in [runner.task, *runner.followers] if task])
            for runner in self.runners.values():
                if runner.child is not None:
                    runner.child.detach()
            log.info("live restore: %d object(s) left running for the next daemon",
                     sum(1 for runner in self.runners.values() if runner.child is not None))
        else:
            await asyncio.gather(*(self._halt(obj, self.runners[obj.id]) for obj in self.objects.values()))
        for runner in self.runners.values():
            runner.log.close()
        if not self.config.live_restore:  # else their children still run in them
            self.cgroups.remove_all()
        # Remote parts keep running under their own daemons; the Flows use them again at start.
        await self.remotes.close()
