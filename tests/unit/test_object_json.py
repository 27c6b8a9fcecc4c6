import json

from jinad.api.objects import _body
from jinad.objects import JObject


def test_an_objects_kept_json_follows_its_changes_and_samples():
    obj = JObject(id="jflow-x", kind="flow", workspace_id="jworkspace-y", spec={}, envs={}, restart="no",
                  timeout_s=1.0, created_at="2026-11-28T00:00:00.000Z")
    sample = {"cpu_percent": 0.0, "memory_rss": 0, "processes": 0}
    first = _body(obj, sample)
    assert _body(obj, sample) is first  # kept
    obj.state = "ready"
    assert json.loads(_body(obj, sample))["state"] == "ready"
    newer = {"cpu_percent": 5.0, "memory_rss": 10, "processes": 2}
    assert json.loads(_body(obj, newer))["resources"] == newer
    assert "wire" not in json.loads(_body(obj, newer))
