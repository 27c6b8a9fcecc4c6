"""Taking over at start: processes a previous run left are ended, stored records read back and
what should be running started again (part of ObjectManager)."""

from __future__ import annotations

import asyncio
import logging

from .errors import ContractError
from .logs import Log
from .records import COLLECTION, JObject, object_from_record
from .runner import Runner
from .states import LIVE, State
from .supervision import end_processes, find_marked

log = logging.getLogger(__name__)


class Recovery:
    """ObjectManager's `recover`; it uses the manager's records, runners and transitions (the
    attributes Launching lists, and `home`)."""

    home: str

    async def recover(self) -> None:
        """End processes a previous run left, then start again what should be running."""
        leftovers = await asyncio.to_thread(find_marked, self.home)
        if leftovers:
            log.warning("ending %d object(s) left running by a previous run", len(leftovers))
        await asyncio.gather(*(end_processes(procs, self.config.stop_grace_s) for procs in leftovers.values()))
        taken: set[int] = set()

        def build(record: dict) -> JObject:
            obj = object_from_record(record)
            if clash := taken & set(obj.ports.values()):  # two records cannot both own a port
                raise ValueError(f"port(s) {sorted(clash)} belong to another object's record")
            taken.update(obj.ports.values())
            return obj

        for obj in self.store.load_all(COLLECTION, build):
            self.objects[obj.id] = obj
            self.runners[obj.id] = Runner(log=Log.from_config(self.config, obj.id))
            self.alloc.held.update(obj.ports.values())
            self.remotes.remember(obj.remote)
        for obj in list(self.objects.values()):
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
            reason = exc.message if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
            self._set_state(obj, State.FAILED, error=f"could not start it again after a daemon restart: {reason}")
            return
        await self._begin(obj, wait=False)
