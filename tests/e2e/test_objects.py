"""Flows, Pods and Peas run by a real `jinad` with real Jina, checked as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from tests.conftest import EXECUTORS, children_of_home, form, wait_until
from tests.e2e.helpers import UPPER, alive, ask_http, create, external_flow, get, in_state, make_workspace, tree_pids


def ask_grpc(port: int, text: str) -> str:
    from docarray import DocList
    from docarray.documents import TextDoc
    from jina import Client

    docs = Client(host="127.0.0.1", port=port, protocol="grpc").post(
        "/", inputs=DocList[TextDoc]([TextDoc(text=text)]), return_type=DocList[TextDoc]
    )
    return docs[0].text


async def test_http_flow_answers_and_delete_leaves_no_process(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", EXECUTORS / "flow_http.yml"))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})
    assert flow["id"].startswith("jflow-") and flow["kind"] == "flow"
    assert flow["state"] == "ready" and flow["protocol"] == "http"
    gateway = flow["ports"]["gateway"]
    assert flow["address"] == f"127.0.0.1:{gateway}"
    low, high = map(int, daemon.port_range.split("-"))
    assert all(low <= port <= high for port in flow["ports"].values()), flow["ports"]

    assert await ask_http(http, gateway, "hello") == "HELLO"

    shown = await wait_until(
        lambda: _processes_at_least(http, daemon, "flows", flow["id"], 3), timeout=15, what="resources sampled over the tree"
    )
    assert shown["resources"]["memory_rss"] > 10_000_000
    pids = [pid for part in flow["parts"] for pid in tree_pids(part["pid"])]
    assert len(pids) >= 3  # the gateway's parent and gateway, the executor

    async with http.delete(f"{daemon.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
        gone = await resp.json()
    assert gone["state"] == "stopped"
    assert alive(pids) == []
    assert children_of_home(daemon.home) == []
    async with http.get(f"{daemon.url}/flows/{flow['id']}") as resp:
        assert resp.status == 404


async def _processes_at_least(http, daemon, plural, object_id, count):
    obj = await get(http, daemon, plural, object_id)
    return obj if obj["resources"]["processes"] >= count else None


async def test_grpc_flow_from_one_multipart_upload(http, daemon):
    body = form(("flow", "flow.yml", EXECUTORS / "flow_grpc.yml"), UPPER)
    async with http.post(daemon.url + "/flows", data=body) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    assert flow["protocol"] == "grpc"
    answer = await asyncio.to_thread(ask_grpc, flow["ports"]["gateway"], "hi")
    assert answer == "HI!"
    async with http.get(f"{daemon.url}/workspaces/{flow['workspace_id']}") as resp:
        assert sorted(f["path"] for f in (await resp.json())["files"]) == ["flow.yml", "upper.py"]


@pytest.mark.parametrize("plural", ["peas", "pods"])
async def test_pea_and_pod_serve_as_external_executors(http, daemon, plural):
    ws = await make_workspace(http, daemon)
    runtime = await create(http, daemon, plural, {
        "workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "uses_with": {"suffix": "?"},
    })
    assert runtime["id"].startswith(f"j{plural[:-1]}-") and runtime["state"] == "ready"
    port = runtime["ports"]["executor"]
    gateway = await external_flow(http, daemon, port)
    assert await ask_http(http, gateway, "ext") == "EXT?"


async def test_pod_replicas_each_serve_and_stay_in_the_range(http, daemon):
    ws = await make_workspace(http, daemon)
    pod = await create(http, daemon, "pods", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "replicas": 2})
    replicas = [pod["ports"]["executor"], pod["ports"]["executor-1"]]
    low, high = map(int, daemon.port_range.split("-"))
    assert all(low <= port <= high for port in pod["ports"].values()), pod["ports"]
    gateway = await external_flow(http, daemon, replicas)
    answers = [await ask_http(http, gateway, f"r{i}") for i in range(4)]
    assert answers == ["R0", "R1", "R2", "R3"]
    shown = await wait_until(lambda: _processes_at_least(http, daemon, "pods", pod["id"], 4), timeout=15, what="pod tree sampled")
    assert shown["resources"]["processes"] >= 4  # parent, two workers, gateway


async def test_crash_at_start_is_422_with_the_traceback_and_nothing_left(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "crash.py", EXECUTORS / "crash.py"),
                              ("files", "flow.yml", EXECUTORS / "flow_crash.yml"))
    failure = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml", "timeout_s": 60}, expect=422)
    assert failure["error"] == "failed_to_start"
    assert any("deliberate crash at start-up" in line for line in failure["log_tail"]), failure["log_tail"]
    assert children_of_home(daemon.home) == []
    flow = await get(http, daemon, "flows", failure["id"])
    assert flow["state"] == "failed" and flow["error"]


async def test_taken_port_is_409_and_creates_nothing(http, daemon):
    ws = await make_workspace(http, daemon)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        answer = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "port": port}, expect=409)
    assert answer["error"] == "conflict" and str(port) in answer["message"]
    async with http.get(daemon.url + "/peas") as resp:
        assert await resp.json() == []


async def test_no_wait_answers_202_then_restart_gives_a_new_process(http, daemon):
    ws = await make_workspace(http, daemon)
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "protocol": "http"},
                       expect=202, query="?wait=false")
    assert pea["state"] == "starting"
    ready = await wait_until(lambda: in_state(http, daemon, "peas", pea["id"], "ready"), timeout=90, what="pea ready")
    async with http.post(f"{daemon.url}/peas/{pea['id']}/restart") as resp:
        assert resp.status == 200
        again = await resp.json()
    assert again["state"] == "ready"
    assert again["pid"] != ready["pid"]
    assert alive([ready["pid"]]) == []
    assert again["ports"] == ready["ports"]


async def test_restart_policy_brings_back_a_child_killed_from_outside(http, daemon):
    ws = await make_workspace(http, daemon)
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "restart": "always"})
    os.kill(pea["pid"], signal.SIGKILL)
    back = await wait_until(lambda: in_state(http, daemon, "peas", pea["id"], "ready", restarts=1), timeout=90, what="restart by policy")
    assert back["pid"] != pea["pid"]
    port = back["ports"]["executor"]
    gateway = await external_flow(http, daemon, port)
    assert await ask_http(http, gateway, "back") == "BACK"


async def test_kill9_of_the_daemon_then_restart_takes_the_flow_back_without_orphans(http, daemon):
    """Live restore (issue 16; before it, the next daemon ended the Flow and started it again)."""
    ws = await make_workspace(http, daemon, ("files", "flow.yml", EXECUTORS / "flow_http.yml"))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})
    old_pids = [pid for part in flow["parts"] for pid in tree_pids(part["pid"])]
    daemon.stop(signal.SIGKILL)
    assert alive(old_pids), "the Flow should outlive a kill -9 of its daemon"

    daemon.start()
    assert sorted(alive(old_pids)) == sorted(old_pids)  # taken back, not ended
    back = await wait_until(lambda: in_state(http, daemon, "flows", flow["id"], "ready"), timeout=90, what="flow recovered")
    assert back["ports"] == flow["ports"]
    assert back["pid"] == flow["pid"] and back["restarts"] == flow["restarts"]
    # Every part taken back as it was: same process, same port.
    assert [(p["name"], p["pid"], p["port"]) for p in back["parts"]] == [(p["name"], p["pid"], p["port"]) for p in flow["parts"]]
    assert await ask_http(http, back["ports"]["gateway"], "again") == "AGAIN"
    marked = {p.pid for p in children_of_home(daemon.home)}
    assert marked == set(old_pids), "every process of the daemon is in one of the Flow's parts"
