"""Taking over at start: stored records read back, children a previous run left under their
keepers taken back (live restore), what cannot be taken back ended, and what should be running
started again (part of ObjectManager)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .errors import ContractError
from .lazy import LazyModule
from .logs import Log
from .records import COLLECTION, DELETING, JObject, object_from_record
from .runner import Runner
from .states import LIVE, State
from .supervision import adopt, end_processes, find_keepers, find_marked

psutil = LazyModule("psutil")  # ~1 MB: loaded when first used (processes to scan or sample)

log = logging.getLogger(__name__)


class Recovery:
    """ObjectManager's `recover`; it uses the manager's records, runners and transitions (the
    attributes Launching lists, and `home`)."""

    home: str

    async def recover(self) -> None:
        """Take back the children a previous run left under their keepers (live restore), end
        what cannot be taken back, then start again what should be running."""
        # On the loop, not in a thread: nothing is served yet, and a thread would stay, with
        # its own malloc arena (~1 MB of an idle daemon).
        self.remotes.remove_leftovers()
        keepers = find_keepers(self.home)
        leftovers = find_marked(self.home)
        taken: set[int] = set()

        def build(record: dict) -> JObject:
            obj = object_from_record(record)
            if obj.part_of is not None:  # a Flow's part runs on a port of its Flow's
                return obj
            if clash := taken & set(obj.ports.values()):  # two records cannot both own a port
                raise ValueError(f"port(s) {sorted(clash)} belong to another object's record")
            taken.update(obj.ports.values())
            return obj

        for obj in self.store.load_all(COLLECTION, build):
            self.objects[obj.id] = obj
            self.runners[obj.id] = Runner(log=Log.from_config(self.config, obj.id))
            self.alloc.held.update(obj.ports.values())
            self.remotes.remember(obj.remote)
        interrupted: dict[str, JObject] = {}
        for obj in self.objects.values():
            if obj.part_of is not None:
                self._attach_log(obj)
            if obj.update_undo is not None:  # a daemon stopped mid-update: the version before it is the Flow's
                obj.changes, obj.update_undo = obj.update_undo, None
                obj.last_update = {**(obj.last_update or {}), "state": "interrupted"}
                interrupted[obj.id] = obj
        # Objects a daemon died deleting: never taken back, their delete is finished below.
        deleting = {obj.id for obj in self.objects.values() if (self.run_root / obj.id / DELETING).exists()}
        adopted = []
        stale = [keeper for found in keepers.values() for keeper in found]  # all but the ones taken back
        for obj in self.objects.values():
            if obj.state not in (State.READY, State.STARTING) or obj.id in deleting:
                continue
            child = None
            for keeper in keepers.get(obj.id, []):  # several after an interrupted restart: the recorded one
                child = await adopt(keeper, obj.pid, obj.id, self.home, self.runners[obj.id].log, self.config.log_max_line_bytes)
                if child is not None:
                    stale.remove(keeper)
                    break
            if child is None:
                continue
            self.runners[obj.id].child = child
            if obj.limits:  # its cgroups, as the previous run made them
                self.runners[obj.id].cgroup = self.cgroups.taken_back(obj.id, obj.limits)
            leftovers.pop(obj.id, None)
            adopted.append(obj)
        if adopted:
            log.info("took back %d object(s) a previous run left running", len(adopted))
        if leftovers:
            log.warning("ending %d object(s) left running by a previous run", len(leftovers))
        await asyncio.gather(*(end_processes(procs, self.config.stop_grace_s) for procs in leftovers.values()))
        for keeper in stale:  # whatever it kept is of no object's now
            with contextlib.suppress(psutil.Error):
                keeper.kill()
        # A Flow's parts first: a Flow starting waits for its parts, and starts those not begun.
        adopted.sort(key=lambda obj: obj.part_of is None)
        for obj in adopted:
            if obj.pid is None:  # it was starting, and its pid not yet stored
                obj.pid = self.runners[obj.id].child.pid
                self._save(obj)
            await self._recover_one(obj)
        def should_run(obj: JObject) -> bool:
            return obj.state in LIVE | {State.STOPPED} or (
                obj.state == State.EXITED and self._should_restart(obj, failed=obj.exit_code != 0 or obj.error is not None))

        for obj in sorted(self.objects.values(), key=lambda obj: obj.part_of is None):
            if obj in adopted:
                continue
            if obj.id in deleting or (obj.part_of is not None and obj.part_of not in self.objects):  # or its Flow's
                await self._remove(obj)
                continue
            # A part runs when its Flow does. One an interrupted update changed is left to its
            # Flow's start, which starts it as the Flow now says (the version before the update).
            run = should_run(self.objects[obj.part_of]) and obj.part_of not in interrupted if obj.part_of else should_run(obj)
            if obj.state in (State.READY, State.STARTING):
                self._set_state(obj, State.STOPPING)
            if obj.state == State.STOPPING:
                self._set_state(obj, State.STOPPED, pid=None)
            if run:
                await self._recover_one(obj)
        for flow in interrupted.values():
            self.put_back_interrupted_update(flow)

    async def _recover_one(self, obj: JObject) -> None:
        runner = self.runners[obj.id]
        recorded = {part.pod_id for part in obj.remote}
        try:
            self.workspaces.get(obj.workspace_id)
            runner.launch = await self._prepare_with_remotes(obj)
            if runner.child is not None and {part.pod_id for part in obj.remote} != recorded:
                # Taken back, but some remote parts had to be made again: it dials the old ones.
                await self._halt(obj, runner)
        except Exception as exc:  # whatever it is, the daemon starts, with this object failed
            reason = exc.message if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
            if runner.child is not None:  # taken back, but it cannot be described any more
                await runner.child.stop(self.config.stop_grace_s)
                runner.child = None
                self._set_state(obj, State.STOPPING)
                self._set_state(obj, State.STOPPED, pid=None)
            self._set_state(obj, State.FAILED, error=f"could not start it again after a daemon restart: {reason}")
            return
        await self._begin(obj, wait=False)
