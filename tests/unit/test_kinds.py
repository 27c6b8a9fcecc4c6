"""The Flow YAML jinad writes from the user's: every port it reports is the one Jina uses."""

from __future__ import annotations

import socket

import pytest
import yaml

from jinad.errors import BadRequest, Conflict
from jinad.kinds import FLOW_READY_LINE, Context, prepare_flow
from jinad.ports import PortAllocator


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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


@pytest.mark.parametrize("key", ["port", "port_in", "port_expose", "ports"])
def test_a_port_the_user_fixed_is_used_and_reported_under_any_of_its_names(tmp_path, key):
    gateway, executor = free_ports(2)
    launch, written = prepare(tmp_path, f"jtype: Flow\nwith:\n  {key}: {gateway}\nexecutors:\n  - name: e\n    {key}: {executor}\n")
    assert launch.ports == {"gateway": gateway, "e": executor} and launch.port == gateway
    assert written["with"]["port"] == gateway and written["executors"][0]["port"] == executor
    assert key == "port" or (key not in written["with"] and key not in written["executors"][0])


def test_the_same_port_under_two_names_with_two_values_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="port_in"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - name: e\n    port: 31001\n    port_in: 31002\n")


def test_a_top_level_gateway_section_is_read_as_with_is(tmp_path):
    (port,) = free_ports(1)
    launch, written = prepare(tmp_path, f"jtype: Flow\nwith:\n  port: {port}\ngateway:\n  port_expose: {port}\n  protocol: http\n")
    assert launch.ports == {"gateway": port} and launch.protocol == "http"
    assert written["with"] == {"protocol": "http", "port": port} and written["gateway"] == {}


def test_two_different_gateway_ports_in_with_and_gateway_are_refused(tmp_path):
    """Jina would take the later one silently; a port the user fixed twice is a mistake to say."""
    first, second = free_ports(2)
    with pytest.raises(BadRequest, match="given twice"):
        prepare(tmp_path, f"jtype: Flow\nwith:\n  port: {first}\ngateway:\n  port_expose: {second}\n")


@pytest.mark.parametrize("flow", [
    "with:\n  protocol: [grpc, http]\n  port: [{p}, {p}]\n",
    "with:\n  port: {p}\nexecutors:\n  - {{name: a, port: {p}}}\n",
    "executors:\n  - {{name: a, port: {p}}}\n  - {{name: b, port_in: {p}}}\n",
])
def test_a_port_named_twice_in_one_yaml_is_a_400_that_says_so(tmp_path, flow):
    (port,) = free_ports(1)
    with pytest.raises(BadRequest, match="two parts"):
        prepare(tmp_path, "jtype: Flow\n" + flow.format(p=port))


def test_several_protocols_get_a_port_each_and_each_is_probed(tmp_path):
    ports = free_ports(3)
    launch, written = prepare(tmp_path, f"jtype: Flow\nwith:\n  protocol: [grpc, HTTP, websocket]\n  port: {ports}\n")
    assert launch.ports == {"gateway": ports[0], "gateway-http": ports[1], "gateway-websocket": ports[2]}
    assert launch.protocol == "grpc" and launch.port == ports[0]
    assert launch.probes == [(ports[0], "tcp"), (ports[1], "dry_run"), (ports[2], "tcp")]
    assert written["with"] == {"protocol": ["grpc", "http", "websocket"], "port": ports}

    launch, written = prepare(tmp_path, "jtype: Flow\nwith:\n  protocols: [websocket, http]\n")
    assert list(launch.ports) == ["gateway", "gateway-http"] and launch.protocol == "websocket"
    assert written["with"]["port"] == [launch.ports["gateway"], launch.ports["gateway-http"]]


@pytest.mark.parametrize("gateway, word", [
    ("protocol: [grpc, http]\n  port: 31001", "one port per protocol"),
    ("protocol: [grpc, grpc]", "once"),
    ("protocol: []", "empty"),
    ("protocol: [grpc, smtp]", "smtp"),
    ("protocol: http\n  protocols: grpc", "protocols"),
])
def test_gateway_protocols_and_ports_that_do_not_fit_are_refused(tmp_path, gateway, word):
    with pytest.raises(BadRequest, match=word):
        prepare(tmp_path, f"jtype: Flow\nwith:\n  {gateway}\n")


def test_an_executor_cannot_take_a_gateway_ports_name(tmp_path):
    with pytest.raises(BadRequest, match="gateway-http"):
        prepare(tmp_path, "jtype: Flow\nwith:\n  protocol: [grpc, http]\nexecutors:\n  - name: gateway-http\n")


def test_a_deployment_entry_is_refused_not_run_with_the_wrong_port(tmp_path):
    with pytest.raises(BadRequest, match="jtype: Deployment"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - jtype: Deployment\n    with:\n      uses: A\n")


def test_a_fixed_port_in_use_is_a_conflict(tmp_path):
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        with pytest.raises(Conflict):
            prepare(tmp_path, f"jtype: Flow\nexecutors:\n  - name: e\n    port_in: {holder.getsockname()[1]}\n")


def test_limits_of_a_remote_part_go_to_its_daemon_and_a_local_part_cannot_have_any(tmp_path):
    remote = ("jtype: Flow\nexecutors:\n  - name: far\n    uses: A\n    py_modules: exec.py\n    jinad: https://b:8000\n"
              "    limits: {memory: 1GiB, cpus: 0.5}\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "exec.py").write_text("")
    (ws / "flow.yml").write_text(remote)
    ctx = Context(ws, tmp_path, {}, PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50)
    launch = prepare_flow({"filename": "flow.yml"}, ctx)
    assert launch.remote_needed[0]["pod"]["limits"] == {"memory": 1 << 30, "cpus": 0.5}
    (ws / "flow.yml").write_text(remote.replace("1GiB", "lots"))
    with pytest.raises(BadRequest, match="executor 'far': limits.memory"):
        prepare_flow({"filename": "flow.yml"}, ctx)
    with pytest.raises(BadRequest, match="only a part on another daemon"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - name: near\n    uses: A\n    limits: {pids: 64}\n")
