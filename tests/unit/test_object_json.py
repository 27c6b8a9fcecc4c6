import json

from jinad.api.wire import KeptBytes, ObjectBodies
from jinad.logs import Batch
from jinad.records import JObject


class FakeObjects:
    """What ObjectBodies reads of the manager: its objects and each one's revision."""

    def __init__(self, obj: JObject) -> None:
        self.objects = {obj.id: obj}
        self.revision = 0
        self.resources = {"cpu_percent": 0.0, "memory_rss": 0, "processes": 0}

    def revision_of(self, obj: JObject) -> int:
        return self.revision

    def encode(self, obj: JObject) -> bytes:
        return json.dumps(obj.to_json(self.resources)).encode()


def test_an_objects_kept_json_follows_its_revisions():
    obj = JObject(id="jflow-x", kind="flow", workspace_id="jworkspace-y", spec={}, envs={}, restart="no",
                  timeout_s=1.0, created_at="2026-11-28T00:00:00.000Z")
    objects, bodies = FakeObjects(obj), ObjectBodies()
    first = bodies.body(objects, obj, "a:8000", objects.encode)
    assert bodies.body(objects, obj, "a:8000", objects.encode) is first  # kept
    assert bodies.body(objects, obj, "b:8000", objects.encode) is not first  # its address names the host dialled
    obj.state = "ready"
    objects.revision += 1
    assert json.loads(bodies.body(objects, obj, "a:8000", objects.encode))["state"] == "ready"
    objects.resources = {"cpu_percent": 5.0, "memory_rss": 10, "processes": 2}
    objects.revision += 1
    assert json.loads(bodies.body(objects, obj, "a:8000", objects.encode))["resources"] == objects.resources


def test_encoded_bytes_are_kept_per_thing_within_their_budget():
    frames = KeptBytes(max_bytes=10)
    a, b = Batch(1, "t", "stdout", ["a"], 1), Batch(2, "t", "stdout", ["b"], 1)
    encoded = []

    def encode(batch: Batch) -> bytes:
        encoded.append(batch.first)
        return b"x" * 6

    frames.get(a, encode)
    frames.get(a, encode)
    frames.get(b, encode)  # over budget: a goes
    frames.get(a, encode)
    assert encoded == [1, 2, 1]


def test_what_a_follower_just_used_is_kept_before_what_was_made_last():
    """Least recently used goes first: the follower behind the others finds the frames they
    just used (dropping the least recently made had it encode every batch again)."""
    frames = KeptBytes(max_bytes=12)
    a, b, c = (Batch(n, "t", "stdout", ["x"], 1) for n in (1, 2, 3))
    encoded = []

    def encode(batch: Batch) -> bytes:
        encoded.append(batch.first)
        return b"x" * 6

    for batch in (a, b, a, c, a, b):
        frames.get(batch, encode)
    assert encoded == [1, 2, 3, 2]  # a stayed (used after b was made); b went for c


def test_kept_encodings_are_forgotten_once_nobody_asks_for_a_while(monkeypatch):
    from jinad.api import wire

    now = [1000.0]
    monkeypatch.setattr(wire.time, "monotonic", lambda: now[0])
    frames = KeptBytes(max_bytes=100)
    batch = Batch(1, "t", "stdout", ["x"], 1)
    encoded = []
    frames.get(batch, lambda b: encoded.append(b) or b"x" * 6)
    now[0] += wire.KEPT_IDLE_S / 2
    frames.tend()
    frames.get(batch, lambda b: encoded.append(b) or b"x" * 6)  # still kept
    now[0] += wire.KEPT_IDLE_S + 1
    frames.tend()
    frames.get(batch, lambda b: encoded.append(b) or b"x" * 6)  # forgotten: encoded again
    assert len(encoded) == 2
