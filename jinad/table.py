"""The objects a daemon knows and what runs each: read, stored, sampled, watched.

ObjectManager (objects.py) is the state machine on top of this table; the table is what the
HTTP layer reads and what housekeeping tends, with no transition of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import AsyncIterator

from .errors import BadRequest, NotFound
from .events import Broadcast
from .kinds import KINDS
from .logs import Log
from .records import COLLECTION, JObject
from .runner import Runner
from .states import LIVE, TERMINAL, State
from .store import Store
from .supervision import sample_children

log = logging.getLogger(__name__)


class ObjectTable:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.objects: dict[str, JObject] = {}
        self.runners: dict[str, Runner] = {}
        self._events = Broadcast()
        self._unsaved: set[str] = set()

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
        """The objects of a kind that were asked for (a Flow's parts are listed in the Flow)."""
        return [obj for obj in self.objects.values() if obj.kind == kind and obj.part_of is None]

    def resources_of(self, obj: JObject) -> dict:
        """The object's latest resource sample (a new dict at each sample)."""
        return self.runners[obj.id].resources

    def revision_of(self, obj: JObject) -> int:
        """A number that changes whenever `to_json(obj)` would."""
        return self.runners[obj.id].revision

    def resources_shown(self, obj: JObject) -> dict:
        """What its JSON says it uses: a Flow's gateway and local parts together."""
        if obj.kind != "flow":
            return self.resources_of(obj)
        samples = [self.resources_of(part) for part in (obj, *self.parts_of(obj))]
        return {key: sum(sample[key] for sample in samples) for key in samples[0]}

    def to_json(self, obj: JObject) -> dict:
        if obj.kind != "flow":
            return obj.to_json(self.resources_of(obj))
        return {**obj.to_json(self.resources_shown(obj)), "parts": self.parts_json(obj), "degraded": self.is_degraded(obj)}

    # ---- a Flow's parts (parts.py starts and replaces them) ------------------------------------

    def parts_of(self, flow: JObject) -> list[JObject]:
        return sorted((o for o in self.objects.values() if o.part_of == flow.id), key=lambda o: (o.part, o.replica))

    def is_degraded(self, flow: JObject) -> bool:
        """Ready, but some of its parts, here or on other daemons, are not: it serves with fewer
        replicas (or not every executor). A remote part not yet asked about counts as ready."""
        seen = self.runners[flow.id].remote_seen
        return flow.state == State.READY and (any(part.state != State.READY for part in self.parts_of(flow))
                                              or any(seen[r.pod_id]["state"] != State.READY for r in flow.remote if r.pod_id in seen))

    def parts_json(self, flow: JObject) -> list[dict]:
        """The Flow's gateway, local executor replicas and remote parts, as `parts` shows them."""
        def local(obj: JObject, name: str, replica: int, kind: str) -> dict:
            host, _, port = (obj.address or ":").rpartition(":")
            return {"name": name, "replica": replica, "kind": kind, "id": obj.id, "state": obj.state, "pid": obj.pid,
                    "host": host, "port": int(port) if port else None, "restarts": obj.restarts, "error": obj.error,
                    "resources": self.resources_of(obj)}

        seen = self.runners[flow.id].remote_seen
        unknown = {"state": None, "pid": None, "restarts": None, "error": None, "resources": None}
        remote = [{"name": r.name, "replica": replica, "kind": "executor", "id": r.pod_id, "host": r.host, "port": port,
                   **seen.get(r.pod_id, unknown), "jinad": r.jinad}
                  for r in flow.remote for replica, port in enumerate(r.ports)]
        return [local(flow, "gateway", 0, "gateway"), *(local(part, part.part, part.replica, "executor") for part in self.parts_of(flow)),
                *remote]

    def part_named(self, flow_id: str, name: str) -> JObject:
        """The part `NAME/REPLICA` (`NAME` alone: replica 0) of a Flow, as its log lines are marked."""
        if (other := self.objects.get(flow_id)) is not None and other.kind != "flow":
            raise BadRequest(f"part= names a part of a Flow; {flow_id} is a {other.kind}")
        flow = self.get("flow", flow_id)
        executor, _, replica = name.rpartition("/") if "/" in name else (name, "", "0")
        found = next((part for part in self.parts_of(flow) if part.part == executor and str(part.replica) == replica), None)
        if found is None:
            names = ", ".join(f"{part.part}/{part.replica}" for part in self.parts_of(flow)) or "none"
            raise NotFound(f"flow {flow.id} has no part {name!r} (its parts: {names})")
        return found

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
            if obj.part_of is not None:  # counted as its Flow
                continue
            states = counts[KINDS[obj.kind].plural]
            states[obj.state] = states.get(obj.state, 0) + 1
        return counts

    def events(self) -> AsyncIterator[dict]:
        """Every state change of every object from now on."""
        return self._events.subscribe()

    # ---- storing ------------------------------------------------------------------------------

    def _save(self, obj: JObject) -> None:
        """Store the record; on a full disk keep going and retry later (`save_pending`), so a
        supervisor never dies of it and the record catches up once space is back. Every change
        of an object is stored, so this is also where its revision is bumped."""
        self._changed(obj)
        try:
            self.store.save(COLLECTION, dataclasses.asdict(obj))
            self._unsaved.discard(obj.id)
        except OSError as exc:
            if obj.id not in self._unsaved:
                log.error("could not store %s (%s); will retry", obj.id, exc)
            self._unsaved.add(obj.id)

    def _changed(self, obj: JObject) -> None:
        """Bump the revision of the object and of the Flow it is a part of (which shows it)."""
        for object_id in (obj.id, obj.part_of):
            if object_id in self.runners:
                self.runners[object_id].revision += 1

    def save_pending(self) -> None:
        for object_id in list(self._unsaved):
            if object_id in self.objects:
                self._save(self.objects[object_id])
            else:
                self._unsaved.discard(object_id)

    # ---- housekeeping -------------------------------------------------------------------------

    async def sample_resources(self) -> None:
        """Refresh `resources` of every running object, one scan of the process table for all."""
        running = [runner for runner in self.runners.values() if runner.child]
        samples = await sample_children([runner.child for runner in running if not (runner.cgroup and runner.cgroup.counts_resources())])
        # An object in cgroups is counted from their files: no scan of the process table.
        samples.update({runner.child: await asyncio.to_thread(runner.cgroup.resources)
                        for runner in running if runner.cgroup and runner.cgroup.counts_resources()})
        for runner in running:
            if runner.child in samples:  # not a sample of a child that ended meanwhile
                runner.resources = samples[runner.child]
        for obj in self.objects.values():
            if self.runners[obj.id].child in samples:
                self._changed(obj)

    def tend_logs(self) -> None:
        for runner in self.runners.values():
            runner.log.tend()
