"""What the table says of a Flow's parts (table.py): its `parts`, `degraded`, summed resources, a
part by name, and that a part's change is a change of its Flow's JSON."""

from __future__ import annotations

import pytest

from jinad.errors import NotFound
from jinad.logs import Log
from jinad.records import JObject
from jinad.remotes import RemotePart
from jinad.runner import Runner
from jinad.store import Store
from jinad.table import ObjectTable


def make(table: ObjectTable, tmp_path, object_id: str, kind: str, **fields) -> JObject:
    obj = JObject(id=object_id, kind=kind, workspace_id="jworkspace-w", spec={}, envs={}, restart="no", timeout_s=1.0,
                  created_at="2026-11-30T00:00:00.000Z", **fields)
    table.objects[obj.id] = obj
    table.runners[obj.id] = Runner(log=Log(tmp_path / f"{object_id}.log", 10, 1 << 20, 1 << 20, 1))
    table.runners[obj.id].resources = {"cpu_percent": 1.5, "memory_rss": 100, "processes": 1}
    return obj


@pytest.fixture
def flow_and_parts(tmp_path):
    table = ObjectTable(Store(tmp_path / "store"))
    flow = make(table, tmp_path, "jflow-f", "flow", state="ready", address="h:20000", pid=10)
    flow.remote = [RemotePart(name="far", jinad="http://o:8000", workspace_id="jworkspace-o", content="c", pod_id="jpod-p",
                              host="o", ports=[1, 2], address="o:1")]
    parts = [make(table, tmp_path, f"jpea-{r}", "pea", state="ready", address=f"h:2000{r + 1}", pid=20 + r, part_of=flow.id,
                  part="upper", replica=r) for r in (1, 0)]
    return table, flow, sorted(parts, key=lambda p: p.replica)


def test_a_flows_parts_are_its_gateway_replicas_and_remote_parts(flow_and_parts):
    table, flow, parts = flow_and_parts
    shown = table.to_json(flow)
    assert [(p["name"], p["replica"], p["kind"], p["host"], p["port"], p["pid"]) for p in shown["parts"]] == [
        ("gateway", 0, "gateway", "h", 20000, 10), ("upper", 0, "executor", "h", 20001, 20), ("upper", 1, "executor", "h", 20002, 21),
        ("far", 0, "executor", "o", 1, None), ("far", 1, "executor", "o", 2, None)]
    assert shown["degraded"] is False and shown["resources"] == {"cpu_percent": 4.5, "memory_rss": 300, "processes": 3}
    assert table.list("pea") == [] and table.list("flow") == [flow]
    parts[1].state = "exited"
    assert table.to_json(flow)["degraded"] is True


def test_a_part_is_found_by_its_mark_and_its_change_is_its_flows(flow_and_parts):
    table, flow, parts = flow_and_parts
    assert table.part_named(flow.id, "upper/1") is parts[1] and table.part_named(flow.id, "upper") is parts[0]
    with pytest.raises(NotFound, match="its parts: upper/0, upper/1"):
        table.part_named(flow.id, "upper/2")
    before = table.revision_of(flow)
    table._save(parts[1])
    assert table.revision_of(flow) == before + 1


def test_a_remote_part_shows_as_its_watcher_last_saw_it_and_counts_toward_degraded(flow_and_parts):
    table, flow, _ = flow_and_parts
    assert [p["state"] for p in table.to_json(flow)["parts"][3:]] == [None, None]  # not yet asked: not degraded either
    seen = {"state": "ready", "pid": 7, "restarts": 1, "error": None, "resources": {"processes": 2}}
    table.runners[flow.id].remote_seen["jpod-p"] = seen
    shown = table.to_json(flow)
    assert [{k: p[k] for k in seen} for p in shown["parts"][3:]] == [seen, seen] and shown["degraded"] is False
    table.runners[flow.id].remote_seen["jpod-p"] = {**seen, "state": "unreachable", "error": "far cannot be reached"}
    shown = table.to_json(flow)
    assert shown["degraded"] is True and shown["parts"][3]["error"] == "far cannot be reached"
    flow.remote = []  # dropped: what was seen of it no longer counts
    assert table.to_json(flow)["degraded"] is False
