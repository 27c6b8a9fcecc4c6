"""An object's record: the fields stored for a Flow, Pod or Pea, and the check of a stored one."""

from __future__ import annotations

import dataclasses
import math

from .kinds import KINDS
from .remotes import RemotePart
from .states import RestartPolicy, State
from .store import from_record

COLLECTION = "objects"
DELETING = "deleting"  # a file in an object's run folder while it is being deleted


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
    limits: dict = dataclasses.field(default_factory=dict)  # see limits.py; enforced with cgroups
    owner: str | None = None  # who made it, for what (a Flow's remote part: `<flow id>/<part name>`)
    remote: list[RemotePart] = dataclasses.field(default_factory=list)  # stored as dicts of its fields
    # A Pea that is one replica of a Flow's executor (see parts.py): the Flow's id, the
    # executor's name and the replica's number.
    part_of: str | None = None
    part: str | None = None
    replica: int | None = None
    # A Flow's rolling updates, by executor name: what they changed of its YAML.
    changes: dict = dataclasses.field(default_factory=dict)
    # A Flow's last rolling update: {executor, state: running | done | rolled_back | interrupted, started_at,
    # finished_at, unavailable_s: how long no replica of that executor served (1 replica)}.
    last_update: dict | None = None
    # While a rolling update runs, the Flow's `changes` before it: a daemon that stops midway
    # puts those back at its next start (recovery.py), so the stored version is one that ran.
    update_undo: dict | None = None

    def to_json(self, resources: dict) -> dict:
        # Plain getattr, not dataclasses.asdict: this is on GET's hot path, asdict deep-copies.
        return {**{name: getattr(self, name) for name in PUBLIC_FIELDS}, "resources": resources,
                "remote": [dataclasses.asdict(part) for part in self.remote]}


PUBLIC_FIELDS = [f.name for f in dataclasses.fields(JObject)
                 if f.name not in ("spec", "envs", "timeout_s", "remote", "changes", "update_undo")]


def object_from_record(record: dict) -> JObject:
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
