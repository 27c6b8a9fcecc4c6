"""The Flow YAML jinad writes from the user's: every port it reports is the one Jina uses."""

from __future__ import annotations

import pytest
import yaml

from jinad.errors import BadRequest
from jinad.kinds import FLOW_READY_LINE, Context, prepare_flow
from jinad.ports import PortAllocator


def prepare(tmp_path, flow_yaml: str):
    """(launch, the YAML jinad wrote) for a Flow YAML in a workspace holding exec.py."""
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "exec.py").write_text("")
    (ws / "flow.yml").write_text(flow_yaml)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    ctx = Context(ws, run, {}, PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50)
    launch = prepare_flow({"filename": "flow.yml"}, ctx)
    return launch, yaml.safe_load((run / "flow.yml").read_text())


def test_a_flow_written_with_deployments_keeps_its_executors_there(tmp_path):
    launch, written = prepare(tmp_path, "jtype: Flow\ndeployments:\n  - name: a\n    uses: A\n    py_modules: exec.py\n  - uses: B\n")
    assert "executors" not in written
    assert [(e["name"], e["port"]) for e in written["deployments"]] == [("a", launch.ports["a"]), ("executor1", launch.ports["executor1"])]
    assert written["deployments"][0]["py_modules"] == [str(tmp_path / "ws" / "exec.py")]
    assert launch.ready_line == FLOW_READY_LINE


def test_a_flow_with_both_executors_and_deployments_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="both 'executors' and 'deployments'"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - uses: A\ndeployments:\n  - uses: B\n")


def test_a_deployment_entry_is_refused_not_run_with_the_wrong_port(tmp_path):
    with pytest.raises(BadRequest, match="jtype: Deployment"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - jtype: Deployment\n    with:\n      uses: A\n")
