"""A Flow as its parts (issue 15).

- rolling: a gRPC Flow whose executor (upper.py) has 2 replicas answers Jina's own Client,
  one request after another from a separate process, while `PATCH /flows/{id}/executors/upper`
  changes its `uses_with` (a rolling update), then scales it to 3 and back to 2. Figures: failed
  requests during the update and during the scaling; the update's time per replica against a
  plain start of the same executor (`POST /peas` until its `201`, while the loop runs too).
- flow3: a 3-executor gRPC Flow, `POST /flows` until its `201` and the PSS of every process the
  daemon started for it (gateway, parts and their keepers), against bare `jina flow --uses` of
  the same YAML (until its gateway port answers; the whole process group's PSS). Interleaved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import yaml

from common import JINA, PORTS, PYTHON, TESTS_EXECUTORS, Daemon, child_env, children_of_home, connects, end_group, http_json, \
    is_free, mb, spawn, tmp_root, upload_workspace, wait_until
from objects import create, delete
from results import Figure

UPPER = TESTS_EXECUTORS / "upper.py"
REPLICATED = {"jtype": "Flow", "with": {"protocol": "grpc"},
              "executors": [{"name": "upper", "uses": "Upper", "py_modules": "upper.py", "replicas": 2}]}
THREE = {"jtype": "Flow", "with": {"protocol": "grpc"},
         "executors": [{"name": f"e{i}", "uses": "Upper", "py_modules": "upper.py", "uses_with": {"suffix": str(i)}}
                       for i in range(3)]}
SETTLE_S = 2.0  # after ready, before memory is read
# Jina's Client in a loop, one request after the last; a line on stdin asks for the counts so far.
CLIENT_LOOP = """
import select, sys
from docarray import DocList
from docarray.documents import TextDoc
from jina import Client
client = Client(host="127.0.0.1", port=int(sys.argv[1]), protocol="grpc")
ok = failed = 0
print("looping", flush=True)
while True:
    if select.select([sys.stdin], [], [], 0)[0]:
        if not sys.stdin.readline():
            break
        print(ok, failed, flush=True)
    try:
        client.post("/", inputs=DocList[TextDoc]([TextDoc(text="a")]), return_type=DocList[TextDoc])
        ok += 1
    except Exception:
        failed += 1
"""


def patch(daemon: Daemon, flow_id: str, body: dict) -> float:
    began = time.perf_counter()
    status, answer = http_json("PATCH", f"{daemon.url}/flows/{flow_id}/executors/upper", body, daemon.headers, timeout=300)
    if status != 200:
        raise RuntimeError(f"PATCH answered {status}: {json.dumps(answer)[:2000]}")
    return time.perf_counter() - began


class Loop:
    """CLIENT_LOOP in a process of its own group; `counts()` -> (answered, failed) so far."""

    def __init__(self, port: int) -> None:
        self.proc = spawn([PYTHON, "-c", CLIENT_LOOP, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "looping":
            raise RuntimeError("the client loop did not start")

    def counts(self) -> tuple[int, int]:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        ok, failed = map(int, self.proc.stdout.readline().split())
        return ok, failed

    def close(self) -> None:
        end_group(self.proc)


def rolling_once(root: Path, i: int) -> dict:
    with Daemon(root, f"rolling-{i}") as daemon:
        (root / f"rolling-{i}.yml").write_text(yaml.safe_dump(REPLICATED, sort_keys=False))
        ws = upload_workspace(daemon, [root / f"rolling-{i}.yml", UPPER])
        flow = create(daemon, "flows", {"workspace_id": ws, "filename": f"rolling-{i}.yml"})
        loop = Loop(flow["ports"]["gateway"])
        try:
            # The plain start under the same load as the update: the loop keeps the cores busy.
            began = time.perf_counter()
            pea = create(daemon, "peas", {"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"]})
            plain = time.perf_counter() - began
            delete(daemon, "peas", pea["id"])
            time.sleep(1.0)
            start = loop.counts()
            update = patch(daemon, flow["id"], {"uses_with": {"suffix": "-v2"}})
            time.sleep(1.0)
            updated = loop.counts()
            up = patch(daemon, flow["id"], {"replicas": 3})
            time.sleep(1.0)
            down = patch(daemon, flow["id"], {"replicas": 2})
            time.sleep(1.0)
            scaled = loop.counts()
        finally:
            loop.close()
        return {"plain_start_s": plain, "update_s": update, "per_replica_s": update / 2, "scale_up_s": up, "scale_down_s": down,
                "update_ok": updated[0] - start[0], "update_failed": updated[1] - start[1],
                "scale_ok": scaled[0] - updated[0], "scale_failed": scaled[1] - updated[1]}


def tree_pss(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            pass
    return total


def group_of(leader: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == leader:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def bare_once(root: Path, run: str) -> tuple[float, int]:
    """(seconds until its gateway answers, PSS of its process group) of bare `jina flow`."""
    folder = root / f"bare-{run}"
    folder.mkdir()
    shutil.copy(UPPER, folder / "upper.py")
    block = PORTS.block()
    free = [p for p in block if is_free(p)]
    flow = json.loads(json.dumps(THREE))
    flow["with"]["port"] = free[0]
    for entry, port in zip(flow["executors"], free[1:]):
        entry["py_modules"] = [str(folder / "upper.py")]
        entry["port"] = port
    (folder / "flow.yml").write_text(yaml.safe_dump(flow, sort_keys=False))
    env = child_env(HOME=str(root / "bare-home"), JINA_RANDOM_PORT_MIN=str(free[4]), JINA_RANDOM_PORT_MAX=str(block.stop - 1))
    with open(folder / "out.log", "wb") as out:
        began = time.perf_counter()
        proc = spawn([JINA, "flow", "--uses", folder / "flow.yml"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL)
    try:
        # A gRPC gateway opens its port once every executor is ready.
        wait_until(lambda: connects(free[0]) or proc.poll() is not None, 120, "bare jina flow to answer", interval=0.01)
        if proc.poll() is not None:
            raise RuntimeError(f"jina flow exited: {(folder / 'out.log').read_text(errors='replace')[-2000:]}")
        seconds = time.perf_counter() - began
        time.sleep(SETTLE_S)
        return seconds, tree_pss(group_of(proc.pid))
    finally:
        end_group(proc)


def jinad_once(root: Path, daemon: Daemon, workspace: str) -> tuple[float, int]:
    began = time.perf_counter()
    flow = create(daemon, "flows", {"workspace_id": workspace, "filename": "three.yml"})
    seconds = time.perf_counter() - began
    time.sleep(SETTLE_S)
    pss = tree_pss(children_of_home(daemon.home))
    delete(daemon, "flows", flow["id"])
    return seconds, pss


def run(quick: bool, runs: int) -> list[Figure]:
    count = 1 if quick else runs
    rolling, bare, ours = [], [], []
    with tmp_root("parts") as root:
        for i in range(count):
            rolling.append(rolling_once(root, i))
            print("  " + json.dumps({k: round(v, 2) for k, v in rolling[-1].items()}))
        (root / "three.yml").write_text(yaml.safe_dump(THREE, sort_keys=False))
        (root / "bare-home").mkdir()
        with Daemon(root, "flow3") as daemon:
            workspace = upload_workspace(daemon, [root / "three.yml", UPPER])
            if not quick:
                print(f"  warm-up bare run: {bare_once(root, 'warm')[0]:.2f} s (not counted)")
            for i in range(count):
                bare.append(bare_once(root, str(i)))
                ours.append(jinad_once(root, daemon, workspace))
                print(f"  run {i}: bare {bare[-1][0]:.2f} s {mb(bare[-1][1]):.0f} MB PSS, "
                      f"jinad {ours[-1][0]:.2f} s {mb(ours[-1][1]):.0f} MB PSS")
    answered = [r["update_ok"] for r in rolling]
    return [
        Figure("parts.rolling.update_failed_requests", "parts: failed requests (Jina Client, back to back) during a rolling "
               "update of a 2-replica executor", "requests", [r["update_failed"] for r in rolling],
               target=("value", "<=", 0), target_text="0", note=f"answered meanwhile: {answered}"),
        Figure("parts.rolling.scale_failed_requests", "parts: failed requests during a scale 2 → 3 → 2 of that executor",
               "requests", [r["scale_failed"] for r in rolling], target=("value", "<=", 0), target_text="0",
               note=f"answered meanwhile: {[r['scale_ok'] for r in rolling]}; scale up "
                    f"{[round(r['scale_up_s'], 2) for r in rolling]} s, down {[round(r['scale_down_s'], 2) for r in rolling]} s"),
        Figure("parts.rolling.update_per_replica_s", "parts: rolling update time per replica (PATCH → 200, / 2)", "s",
               [r["per_replica_s"] for r in rolling], "POST /peas of the same executor → 201 (under the same loop)",
               [r["plain_start_s"] for r in rolling]),
        Figure("parts.flow3.deploy_s", "parts: 3-executor gRPC Flow, POST /flows → 201", "s", [o[0] for o in ours],
               "bare jina flow until its gateway answers", [b[0] for b in bare], ("ratio", "<=", 1.05), "≤ 1.05×"),
        Figure("parts.flow3.pss_mb", "parts: PSS of the 3-executor Flow's processes (gateway, parts, keepers)", "MB",
               [mb(o[1]) for o in ours], "bare jina flow's process group", [mb(b[1]) for b in bare],
               ("ratio", "<=", 1.1), "≤ 1.1×"),
    ]
