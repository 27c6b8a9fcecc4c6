"""The kind-table: the Flow YAML jinad writes from the user's (every port it reports is the one Jina
uses), and the command lines of Pods and Peas with the requests they refuse."""

from __future__ import annotations

import socket

import pytest
import yaml

from jinad.errors import BadRequest, Conflict, NotFound
from jinad.kinds import FLOW_READY_LINE, REPLICA_SLOTS, Preparation, check_part_changes, prepare_flow, prepare_pea, prepare_pod
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


def prepare(tmp_path, flow_yaml: str, **options):
    """(launch, the YAML jinad wrote) for a Flow YAML in a workspace holding exec.py."""
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "exec.py").write_text("")
    (ws / "flow.yml").write_text(flow_yaml)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    ctx = Preparation(ws, run, options.pop("ports", {}), PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50, **options)
    launch = prepare_flow({"filename": "flow.yml"}, ctx)
    return launch, yaml.safe_load((run / "flow.yml").read_text())


def test_a_flow_written_with_deployments_keeps_its_executors_there(tmp_path):
    launch, written = prepare(tmp_path, "jtype: Flow\ndeployments:\n  - name: a\n    uses: A\n    py_modules: exec.py\n  - uses: B\n")
    assert "executors" not in written
    assert [(e["name"], e["port"][0]) for e in written["deployments"]] == [("a", launch.ports["a"]), ("executor1", launch.ports["executor1"])]
    assert launch.parts[0].spec["py_modules"] == [str(tmp_path / "ws" / "exec.py")]
    assert launch.ready_line == FLOW_READY_LINE


def test_each_replica_of_an_executor_is_a_part_behind_a_gateway_that_knows_spare_ports(tmp_path):
    launch, written = prepare(tmp_path, "jtype: Flow\nexecutors:\n  - name: a\n    uses: A\n    py_modules: exec.py\n"
                                        "    replicas: 2\n    uses_with: {x: 1}\n    env: {K: v}\n    needs: gateway\n",
                              envs={"E": "1"})
    entry = written["executors"][0]
    slots = [launch.ports["a"]] + [launch.ports[f"a/{r}"] for r in range(1, REPLICA_SLOTS)]
    assert entry == {"name": "a", "needs": "gateway", "external": True, "host": "127.0.0.1", "port": slots}
    assert [(p.name, p.replica, p.port) for p in launch.parts] == [("a", 0, slots[0]), ("a", 1, slots[1])]
    assert launch.parts[1].spec["uses_with"] == {"x": 1} and launch.parts[1].spec["port"] == slots[1]
    assert launch.parts[0].envs == {"E": "1", "K": "v"}


@pytest.mark.parametrize("entry", ["    shards: 2\n", "    uses_with: {x: '${{ ENV.X }}'}\n", "    external: true\n    port: 31099\n"])
def test_what_a_part_cannot_say_stays_inside_the_gateways_flow(tmp_path, entry):
    launch, written = prepare(tmp_path, f"jtype: Flow\nexecutors:\n  - name: a\n    uses: A\n{entry}")
    assert launch.parts == [] and not isinstance(written["executors"][0]["port"], list)


def test_a_flow_with_limits_keeps_every_executor_inside(tmp_path):
    launch, written = prepare(tmp_path, "jtype: Flow\nexecutors:\n  - name: a\n    uses: A\n", parts=False)
    assert launch.parts == [] and "external" not in written["executors"][0]


def test_an_update_changes_the_parts_and_scales_within_the_ports_the_gateway_knows(tmp_path):
    flow = "jtype: Flow\nexecutors:\n  - name: a\n    uses: A\n    replicas: 2\n"
    first, _ = prepare(tmp_path, flow)
    ports = dict(first.ports)
    launch, _ = prepare(tmp_path, flow, ports=dict(ports), changes={"a": {"uses_with": {"y": 2}, "replicas": 3, "envs": {"Z": "z"}}})
    assert launch.ports == ports
    assert [(p.replica, p.port, p.spec["uses_with"], p.envs) for p in launch.parts] == [
        (r, ports["a" if r == 0 else f"a/{r}"], {"y": 2}, {"Z": "z"}) for r in range(3)]
    with pytest.raises(BadRequest, match=f"at most {REPLICA_SLOTS} replicas"):
        prepare(tmp_path, flow, ports=dict(ports), changes={"a": {"replicas": REPLICA_SLOTS + 1}})
    with pytest.raises(NotFound, match="no executor 'b'"):
        prepare(tmp_path, flow, ports=dict(ports), changes={"b": {"replicas": 1}})


@pytest.mark.parametrize("body, message", [({}, "any of"), ({"replicas": 1, "name": "x"}, "unknown field"),
                                           ({"uses_with": []}, "uses_with"), ({"envs": {"A=B": "c"}}, "envs"),
                                           ({"uses": "--help"}, "uses")])
def test_a_bad_update_is_refused(body, message):
    with pytest.raises(BadRequest, match=message):
        check_part_changes(body)


def test_a_part_runs_as_one_jina_executor_process_with_its_settings(tmp_path):
    (port,) = free_ports(1)
    ctx = Preparation(tmp_path, tmp_path, {}, PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50)
    launch = prepare_pea({"uses": "A", "port": port, "native": True, "uses_metas": {"m": 1}, "workspace": "w"}, ctx)
    assert launch.argv[launch.argv.index("--uses-metas") + 1] == '{"m": 1}'
    assert launch.argv[launch.argv.index("--workspace") + 1] == "w" and launch.argv[-1] == "--native"


def test_a_flow_with_both_executors_and_deployments_is_refused(tmp_path):
    with pytest.raises(BadRequest, match="both 'executors' and 'deployments'"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - uses: A\ndeployments:\n  - uses: B\n")


@pytest.mark.parametrize("key", ["port", "port_in", "port_expose", "ports"])
def test_a_port_the_user_fixed_is_used_and_reported_under_any_of_its_names(tmp_path, key):
    gateway, executor = free_ports(2)
    launch, written = prepare(tmp_path, f"jtype: Flow\nwith:\n  {key}: {gateway}\nexecutors:\n  - name: e\n    {key}: {executor}\n")
    assert {k: p for k, p in launch.ports.items() if "/" not in k} == {"gateway": gateway, "e": executor} and launch.port == gateway
    assert written["with"]["port"] == gateway and written["executors"][0]["port"][0] == executor
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


def executor_ctx(tmp_path) -> Preparation:
    """What preparing a Pod or Pea needs, in a workspace holding exec.py and exec.yml."""
    ws, run = tmp_path / "ws", tmp_path / "run"
    for folder in (ws, run):
        folder.mkdir(exist_ok=True)
    (ws / "exec.py").write_text("")
    (ws / "exec.yml").write_text("jtype: A\n")
    (tmp_path / "outside.py").write_text("")
    return Preparation(ws, run, {}, PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50)


@pytest.mark.parametrize("prepare_executor", [prepare_pod, prepare_pea])
@pytest.mark.parametrize("spec, word", [
    ({}, "'uses' is required"),
    ({"uses": " "}, "'uses' is required"),
    ({"uses": 7}, "'uses' is required"),
    ({"uses": "--help"}, "must name an Executor"),
    ({"uses": "A\0"}, "NUL"),
    ({"uses": "missing.yml"}, "not a file in the workspace"),
    ({"uses": "A", "uses_with": []}, "uses_with"),
    ({"uses": "A", "py_modules": "../outside.py"}, "outside the workspace"),
    ({"uses": "A", "py_modules": [7]}, "py_modules"),
    ({"uses": "A", "protocol": "smtp"}, "protocol"),
    ({"uses": "A", "port": 0}, "port of executor"),
    ({"uses": "A", "port": "31001"}, "port of executor"),
])
def test_a_pod_or_pea_request_that_cannot_run_is_refused_by_the_kind(tmp_path, prepare_executor, spec, word):
    with pytest.raises(BadRequest, match=word):
        prepare_executor(spec, executor_ctx(tmp_path))


@pytest.mark.parametrize("spec, word", [
    ({"uses": "A", "replicas": 0}, "replicas"),
    ({"uses": "A", "replicas": True}, "replicas"),
    ({"uses": "A", "shards": 1.5}, "shards"),
])
def test_replicas_and_shards_of_a_pod_must_be_whole_numbers_of_at_least_one(tmp_path, spec, word):
    with pytest.raises(BadRequest, match=word):
        prepare_pod(spec, executor_ctx(tmp_path))


def test_a_pea_runs_jina_executor_with_the_files_resolved_in_its_workspace(tmp_path):
    ctx = executor_ctx(tmp_path)
    launch = prepare_pea({"uses": "exec.yml", "py_modules": ["exec.py"], "uses_with": {"a": 1}, "protocol": "HTTP"}, ctx)
    port = launch.ports["executor"]
    assert launch.argv == ["jina", "executor", "--uses", str(ctx.ws_root / "exec.yml"), "--port", str(port), "--protocol", "http",
                           "--py-modules", str(ctx.ws_root / "exec.py"), "--uses-with", '{"a": 1}']
    assert (launch.port, launch.protocol, launch.probes) == (port, "http", [(port, "tcp")])


def test_a_pod_with_replicas_fixes_every_replica_port_and_probes_them_and_its_gateway(tmp_path):
    ctx = executor_ctx(tmp_path)
    launch = prepare_pod({"uses": "A", "replicas": 2}, ctx)
    written = yaml.safe_load((ctx.run_dir / "deployment.yml").read_text())["with"]
    assert launch.argv == ["jina", "deployment", "--uses", str(ctx.run_dir / "deployment.yml")]
    assert set(launch.ports) == {"executor", "gateway", "executor-1"} and launch.port == launch.ports["executor"]
    assert written["peer_ports"] == [launch.ports["executor"], launch.ports["executor-1"]] and written["port"] == launch.ports["gateway"]
    assert sorted(port for port, _ in launch.probes) == sorted(launch.ports.values())


def test_limits_of_a_remote_part_go_to_its_daemon_and_a_local_part_cannot_have_any(tmp_path):
    remote = ("jtype: Flow\nexecutors:\n  - name: far\n    uses: A\n    py_modules: exec.py\n    jinad: https://b:8000\n"
              "    limits: {memory: 1GiB, cpus: 0.5}\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "exec.py").write_text("")
    (ws / "flow.yml").write_text(remote)
    ctx = Preparation(ws, tmp_path, {}, PortAllocator(range(31000, 31100)), "jina", 1 << 20, 50)
    launch = prepare_flow({"filename": "flow.yml"}, ctx)
    assert launch.remote_needed[0]["pod"]["limits"] == {"memory": 1 << 30, "cpus": 0.5}
    (ws / "flow.yml").write_text(remote.replace("1GiB", "lots"))
    with pytest.raises(BadRequest, match="executor 'far': limits.memory"):
        prepare_flow({"filename": "flow.yml"}, ctx)
    with pytest.raises(BadRequest, match="only a part on another daemon"):
        prepare(tmp_path, "jtype: Flow\nexecutors:\n  - name: near\n    uses: A\n    limits: {pids: 64}\n")
