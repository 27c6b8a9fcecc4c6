"""A Flow's parts: each local executor replica runs as a Pea of its own, owned by the Flow,
supervised (restarted alone, by the Flow's restart policy) like any Pea; the Flow's own child
is its gateway, whose Flow YAML lists every such executor as external on ports the Flow holds
(kinds.py, `PartPlan`). Rolling updates and scaling replace, add and remove those Peas one at a
time on those ports while the gateway keeps serving: it skips a replica that is down, and
knows every port a replica may take, so it needs no restart (part of ObjectManager).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from .errors import BadRequest, Conflict, FailedToStart
from .ids import new_id, utc_now
from .kinds import Launch, PartPlan, check_part_changes
from .logs import Log
from .records import COLLECTION, JObject
from .runner import Runner
from .states import State

log = logging.getLogger(__name__)


class Parts:
    """ObjectManager's methods for a Flow's parts; they use its objects, runners and transitions."""

    _updating: dict[str, asyncio.Task]  # Flows with a rolling update running, and its task

    def _attach_log(self, part: JObject) -> None:
        """The part's lines go into its Flow's log too, marked with the part."""
        if part.part_of in self.runners:
            self.runners[part.id].log.copy_to = (self.runners[part.part_of].log, f"[{part.part}/{part.replica}] ")

    def _new_part(self, flow: JObject, plan: PartPlan) -> JObject:
        part = JObject(id=new_id("pea"), kind="pea", workspace_id=flow.workspace_id, spec=plan.spec, envs=plan.envs,
                       restart=flow.restart, timeout_s=flow.timeout_s, created_at=utc_now(),
                       ports={"executor": plan.port}, part_of=flow.id, part=plan.name, replica=plan.replica)
        self.store.save(COLLECTION, dataclasses.asdict(part))
        self.objects[part.id] = part
        self.runners[part.id] = Runner(log=Log.from_config(self.config, part.id))
        self._attach_log(part)
        self.runners[part.id].launch = self._prepare(part)
        return part

    async def _ensure_parts(self, flow: JObject, launch: Launch) -> str | None:
        """Start the parts the Flow's launch plans that do not run, remove those it no longer
        plans; wait until each is ready. None, or why one cannot start."""
        have = {(part.part, part.replica): part for part in self.parts_of(flow)}
        waiting = []
        for plan in launch.parts:
            part = have.pop((plan.name, plan.replica), None)
            if part is None:
                part = self._new_part(flow, plan)
                await self._begin(part, wait=False)
            elif self.is_finished(part.id):  # stopped with its Flow, or given up on: with the plan as it is now
                part.spec, part.envs = plan.spec, plan.envs
                self.runners[part.id].launch = self._prepare(part)
                await self._begin(part, wait=False)
            waiting.append((plan, part))
        for gone in have.values():
            await self._remove(gone)
        for plan, part in waiting:
            reason = await asyncio.shield(self.runners[part.id].start_result)
            if reason is not None:
                return f"executor {plan.name!r} replica {plan.replica} failed to start: {reason}"
        return None

    async def _halt_parts(self, flow: JObject) -> None:
        await asyncio.gather(*(self._halt(part, self.runners[part.id]) for part in self.parts_of(flow)))

    async def _drop_parts(self, flow: JObject, release_spares: bool = False) -> None:
        """Remove the Flow's parts; with `release_spares` (it failed to start) also the spare
        ports its gateway would list (`NAME/R`), taken again at its next start, so a Flow that
        does not run holds no more ports than a Flow in one `jina flow` would."""
        for part in self.parts_of(flow):
            await self._remove(part)
        if release_spares and (spares := [name for name in flow.ports if "/" in name]):
            self.alloc.release([flow.ports.pop(name) for name in spares])
            self._save(flow)

    # ---- rolling updates and scaling ------------------------------------------------------------

    async def update_executor(self, flow_id: str, name: str, body: object, wait: bool = True) -> JObject:
        """Apply `PATCH /flows/{id}/executors/{name}`: the executor's replicas replaced one at a
        time on their ports, added or removed (see `_roll`). Without `wait`, answers at once."""
        flow = self.get("flow", flow_id)
        changes = check_part_changes(body)
        if remote := next((part for part in flow.remote if part.name == name), None):
            raise BadRequest(f"executor {name!r} runs on {remote.jinad}; an update of a part on another daemon is not "
                             f"supported yet: change the Flow YAML and restart the Flow, or update its Pod {remote.pod_id} there")
        if flow.id in self._updating:
            raise Conflict(f"another update of flow {flow.id} runs; send this one when it has finished")
        if flow.state != State.READY:
            raise Conflict(f"flow {flow.id} is {flow.state}; only a ready Flow is updated (restart it first)")
        earlier = flow.changes
        flow.changes = {**earlier, name: {**earlier.get(name, {}), **changes}}
        try:
            launch = self._prepare(flow)  # refuses a bad change before anything is stopped
        except BaseException:
            flow.changes = earlier
            self._prepare(flow)
            raise
        task = self._updating[flow.id] = asyncio.create_task(self._roll(flow, name, launch, earlier),
                                                             name=f"update {flow.id} {name}")
        task.add_done_callback(lambda _: self._updating.pop(flow.id, None))
        if not wait:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure is told in the Flow's log
            return flow
        try:
            await asyncio.shield(task)  # a client that goes away does not stop it halfway
        except asyncio.CancelledError:
            if not task.cancelled():  # this request's own client went away
                raise
            raise Conflict(f"the update of {name!r} was stopped: flow {flow.id} is being deleted, "
                           f"or the daemon is stopping") from None
        return flow

    async def _roll(self, flow: JObject, name: str, launch: Launch, earlier: dict, outcome: str = "done") -> None:
        """Replace, add and remove the executor's replicas one at a time; if one fails to start,
        put back every replica changed so far and raise FailedToStart. The Flow's `last_update`
        says how it went (`outcome` when all went well)."""
        runner = self.runners[flow.id]
        async with runner.lock:
            flow.last_update = {"executor": name, "state": "running", "started_at": utc_now(), "finished_at": None,
                                "unavailable_s": 0.0}
            flow.update_undo = earlier
            self._save(flow)
            try:
                await self._roll_replicas(flow, name, launch, earlier)
            except FailedToStart:
                flow.last_update.update(state="rolled_back", finished_at=utc_now())
                flow.update_undo = None
                raise
            except BaseException:  # deleted, or the daemon stopping: its next start puts `earlier` back
                flow.last_update.update(state="interrupted", finished_at=utc_now())
                raise
            else:
                flow.last_update.update(state=outcome, finished_at=utc_now())
                flow.update_undo = None
            finally:
                self._save(flow)

    def put_back_interrupted_update(self, flow: JObject) -> None:
        """After a daemon restart: the replicas an interrupted update had changed, and that were
        taken back still running, replaced again by the version the Flow now says (recovery.py
        put its `changes` back), one at a time once the Flow is ready."""
        async def put_back() -> None:
            runner = self.runners[flow.id]
            if runner.start_result is None or await asyncio.shield(runner.start_result) is not None or flow.state != State.READY:
                return
            await self._roll(flow, flow.last_update["executor"], self._prepare(flow), flow.changes, outcome="rolled_back")

        task = self._updating[flow.id] = asyncio.create_task(put_back(), name=f"put back the update of {flow.id}")
        task.add_done_callback(lambda t: (self._updating.pop(flow.id, None), t.cancelled() or t.exception()))

    async def _roll_replicas(self, flow: JObject, name: str, launch: Launch, earlier: dict) -> None:
        """`_roll`'s work, under the Flow's lock."""
        runner = self.runners[flow.id]
        have = {part.replica: part for part in self.parts_of(flow) if part.part == name}
        done: list[tuple[JObject, tuple[dict, dict] | None]] = []  # (part, its spec and envs before; None: new)
        for plan in (plan for plan in launch.parts if plan.name == name):
            part = have.pop(plan.replica, None)
            try:
                if part is None:
                    part = self._new_part(flow, plan)
                    done.append((part, None))
                    await self._begin(part, wait=True)
                elif (part.spec, part.envs) != (plan.spec, plan.envs) or part.state != State.READY:
                    done.append((part, (part.spec, part.envs)))
                    alone = not any(other.state == State.READY for other in self.parts_of(flow)
                                    if other.part == name and other is not part)
                    began = time.monotonic()
                    try:
                        await self._replace(part, plan.spec, plan.envs)
                    finally:
                        if alone:  # no other replica served meanwhile: the executor was down
                            flow.last_update["unavailable_s"] += round(time.monotonic() - began, 3)
            except FailedToStart as exc:
                runner.log.append("stderr", [f"update of {name!r}: replica {plan.replica} failed to start; rolling back"])
                runner.log.flush()
                await self._roll_back(done)
                flow.changes = earlier
                runner.launch = self._prepare(flow)
                self._save(flow)
                raise FailedToStart(f"executor {name!r} replica {plan.replica} failed to start, so the update "
                                    f"was rolled back: {exc.message}", id=flow.id,
                                    log_tail=exc.details.get("log_tail", [])) from None
        for gone in have.values():  # scaled down
            await self._remove(gone)
        runner.launch = launch
        self._save(flow)

    async def _replace(self, part: JObject, spec: dict, envs: dict) -> None:
        part.spec, part.envs = spec, envs
        self._save(part)
        await self.restart("pea", part.id, wait=True)

    async def _roll_back(self, done: list[tuple[JObject, tuple[dict, dict] | None]]) -> None:
        for part, before in reversed(done):
            if before is None:
                await self._remove(part)
                continue
            try:
                await self._replace(part, *before)
            except FailedToStart as exc:  # its restart policy goes on trying
                log.warning("rolling back %s: %s", part.id, exc.message)

