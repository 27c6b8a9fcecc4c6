"""Live restore (issue 16): a daemon that is killed, or stopped with --live-restore, leaves its
children running; the next daemon takes them back with the same pids and ports and loses no
line they printed meanwhile."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import EXECUTORS, children_of_home, form, wait_until
from tests.e2e.helpers import UNRULY, alive, create, get, make_workspace, read_stream, tree_pids

# At a line's start, not to its end: Jina's own log line, printed by another thread of the child
# at the same moment, can land on the same line ("tick 4INFO ... server bound"; seen in CI).
TICK = re.compile(r"^tick (\d+)(?!\d)")
OUTAGE_S = 3.0
# A steady request loop with Jina's own Client: one request every 20 ms until told to stop.
CLIENT_LOOP = """
import sys, time
from docarray import DocList
from docarray.documents import TextDoc
from jina import Client
client = Client(host="127.0.0.1", port=int(sys.argv[1]), protocol="grpc")
ok = failed = 0
print("looping", flush=True)
while not sys.stdin.closed:
    try:
        docs = client.post("/", inputs=DocList[TextDoc]([TextDoc(text="a")]), return_type=DocList[TextDoc])
        ok += docs[0].text == "A!"
        failed += docs[0].text != "A!"
    except Exception as exc:
        failed += 1
        print("failed:", type(exc).__name__, exc, file=sys.stderr, flush=True)
    time.sleep(0.02)
    import select
    if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
        break
print(ok, failed, flush=True)
"""


def outage(daemon, how: int) -> float:
    """Stop the daemon (`how`), wait OUTAGE_S, start it again; when it listened again."""
    daemon.stop(how)
    time.sleep(OUTAGE_S)
    daemon.start()
    return time.monotonic()


@pytest.mark.parametrize("how, extra", [(signal.SIGKILL, ()), (signal.SIGTERM, ("--live-restore",))], ids=["kill9", "sigterm-live-restore"])
async def test_a_flow_serves_through_a_daemon_outage_and_is_taken_back(http, daemon_factory, how, extra):
    daemon = daemon_factory(*extra)
    ws = await make_workspace(http, daemon, ("files", "flow.yml", EXECUTORS / "flow_grpc.yml"))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})
    pids = sorted(tree_pids(flow["pid"]))
    loop = subprocess.Popen([sys.executable, "-c", CLIENT_LOOP, str(flow["ports"]["gateway"])], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert loop.stdout.readline().strip() == "looping"
        await asyncio.sleep(1.0)
        started = outage(daemon, how)
        back = await wait_until(lambda: get(http, daemon, "flows", flow["id"]), 5, "the flow's record")
        ready_after = time.monotonic() - started
        assert back["state"] == "ready" and ready_after < 1.0, (back["state"], ready_after)
        assert back["pid"] == flow["pid"] and back["ports"] == flow["ports"]
        assert sorted(tree_pids(flow["pid"])) == pids
        await asyncio.sleep(1.0)
    finally:
        out, err = loop.communicate("", timeout=60)
    ok, failed = map(int, out.split()[-2:])
    assert failed == 0 and ok > 100, err
    async with http.delete(f"{daemon.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    assert alive(pids) == []


@pytest.mark.parametrize("how, extra", [(signal.SIGKILL, ()), (signal.SIGTERM, ("--live-restore",))], ids=["kill9", "sigterm-live-restore"])
async def test_no_line_printed_during_a_daemon_outage_is_lost(http, daemon_factory, how, extra):
    daemon = daemon_factory(*extra)
    async with http.post(daemon.url + "/workspaces", data=form(("files", "ticker.py", EXECUTORS / "ticker.py"))) as resp:
        ws = (await resp.json())["id"]
    ticks = 8000  # a line a millisecond: it ticks through the whole outage
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Ticker", "py_modules": ["ticker.py"],
                                              "uses_with": {"ticks": ticks}})
    url = f"{daemon.url}/logs/{pea['id']}?tail=all"
    before, _ = await read_stream(http, url, until_line="tick 500")
    outage(daemon, how)
    after, _ = await read_stream(http, url, headers={"Last-Event-ID": str(before[-1]["seq"])}, until_line="ticker done")
    seqs = [e["seq"] for e in before + after]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # a follower gets every line once
    numbers = [int(m.group(1)) for e in before + after if (m := TICK.match(e["line"]))]
    assert numbers == list(range(ticks))
    async with http.get(url, headers={"Accept": "text/plain"}, params={"follow": "false"}) as resp:
        plain = [int(m.group(1)) for line in (await resp.text()).splitlines() if (m := TICK.search(line))]
    assert plain[-ticks:] == list(range(ticks))
    back = await get(http, daemon, "peas", pea["id"])
    assert back["pid"] == pea["pid"] and back["state"] == "ready"
    async with http.delete(f"{daemon.url}/peas/{pea['id']}") as resp:
        assert resp.status == 200


@pytest.mark.parametrize("restart", ["no", "on-failure"])
async def test_a_child_that_ends_while_no_daemon_runs_has_its_exit_code_and_policy(http, daemon, restart):
    ws = await make_workspace(http, daemon)
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"], "restart": restart})
    daemon.stop(signal.SIGKILL)
    os.killpg(pea["pid"], signal.SIGKILL)
    await wait_until(lambda: not alive(tree_pids(pea["pid"])), 10, "the pea to end")
    daemon.start()
    if restart == "no":
        back = await wait_until(lambda: _state(http, daemon, pea["id"], "exited"), 10, "the pea to be exited")
        assert back["exit_code"] == -9 and "SIGKILL" in back["error"]
    else:
        back = await wait_until(lambda: _state(http, daemon, pea["id"], "ready", restarts=1), 90, "the policy to start it again")
        assert back["pid"] != pea["pid"]


async def test_a_worker_that_died_while_no_daemon_ran_is_not_taken_back_as_ready(http, daemon):
    """Its parent lives on with the port closed: taken back, it must answer on its port soon,
    or be `exited` with why (and its policy applies), not `ready` for good."""
    ws = await make_workspace(http, daemon)
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"]})
    daemon.stop(signal.SIGKILL)
    workers = [pid for pid in tree_pids(pea["pid"]) if pid != pea["pid"]]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    daemon.start()
    back = await wait_until(lambda: _state(http, daemon, pea["id"], "exited"), 30, "the pea to be exited")
    assert "taken back after a daemon restart" in back["error"] or "ended" in back["error"]


async def test_a_daemon_killed_while_it_deletes_finishes_the_delete_at_its_next_start(http, daemon):
    async with http.post(daemon.url + "/workspaces", data=form(UNRULY)) as resp:
        ws = (await resp.json())["id"]
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Stubborn", "py_modules": ["unruly.py"]})
    deleting = asyncio.ensure_future(http.delete(f"{daemon.url}/peas/{pea['id']}"))
    await wait_until(lambda: (daemon.home / "run" / pea["id"] / "deleting").exists(), 10, "the delete to begin")
    daemon.stop(signal.SIGKILL)  # inside the stop's grace: Stubborn ignores SIGTERM
    with pytest.raises(Exception):
        await deleting
    daemon.start()
    async with http.get(f"{daemon.url}/peas/{pea['id']}") as resp:
        assert resp.status == 404
    await wait_until(lambda: not children_of_home(daemon.home), 30, "every process of it to end")


async def test_sighup_does_not_end_a_daemon_without_tls(daemon):
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: "SIGHUP: nothing to reload" in daemon.log_text(), 10, "the SIGHUP to be handled")
    assert daemon.proc.poll() is None


async def test_without_live_restore_sigterm_stops_every_child(http, daemon):
    ws = await make_workspace(http, daemon)
    pea = await create(http, daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"]})
    pids = tree_pids(pea["pid"])
    assert daemon.stop(signal.SIGTERM) == 0
    assert alive(pids) == [] and children_of_home(daemon.home) == []
    assert "every child ended" in daemon.log_text()


async def _state(http, daemon, object_id, state, **expected):
    obj = await get(http, daemon, "peas", object_id)
    return obj if obj["state"] == state and all(obj[k] == v for k, v in expected.items()) else None
