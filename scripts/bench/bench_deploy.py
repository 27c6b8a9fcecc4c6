"""4. Deploy: `POST /flows` until its `201`, against running `jina flow --uses <the same YAML>`
directly until its gateway answers (a TCP connect, then `GET /dry_run` says code 0, polled every
10 ms). The direct run gets the YAML jinad would write (fixed ports, absolute py_modules) and the
environment jinad gives its children. Runs are interleaved; the first direct run (cold caches)
is not counted in a full run."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from common import CLASH_SIGNS, JINA, connects, PORTS, TESTS_EXECUTORS, Daemon, child_env, end_group, is_free, spawn, tmp_root, upload_workspace
from objects import create, delete
from results import Figure

FLOW_YAML = TESTS_EXECUTORS / "flow_http.yml"
UPPER = TESTS_EXECUTORS / "upper.py"


def gateway_answers(port: int) -> bool:
    if not connects(port):
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dry_run", timeout=2) as resp:
            return resp.status == 200 and json.loads(resp.read()).get("code") == 0
    except (OSError, ValueError):
        return False


def direct_once(root: Path, run: int | str, timeout: float) -> float:
    """Seconds from spawning `jina flow` until its gateway answers; the tree is ended after.
    Retried (up to twice) when a port it was given got taken in the meantime (by another
    program on the machine: this run is not jinad, which keeps its ports apart)."""
    for attempt in range(3):
        try:
            return _direct_once(root, f"{run}-{attempt}", timeout)
        except PortClash as exc:
            print(f"  direct run: {exc}; retrying")
    raise RuntimeError("jina flow hit a port clash three times in a row")


class PortClash(RuntimeError):
    pass


def _direct_once(root: Path, run: str, timeout: float) -> float:
    folder = root / f"direct-{run}"
    folder.mkdir()
    home = root / "direct-home"  # shared by the direct runs, as jinad's runs share their workspace's
    home.mkdir(exist_ok=True)
    shutil.copy(UPPER, folder / "upper.py")
    block = PORTS.block()
    free = [p for p in block if is_free(p)]
    gateway, executor = free[0], free[1]
    flow = yaml.safe_load(FLOW_YAML.read_text())
    flow["with"]["port"] = gateway
    for entry in flow["executors"]:
        entry["py_modules"] = [str(folder / "upper.py")]
        entry["port"] = executor
    (folder / "flow.yml").write_text(yaml.safe_dump(flow, sort_keys=False))
    env = child_env(HOME=str(home), JINA_RANDOM_PORT_MIN=str(free[2]), JINA_RANDOM_PORT_MAX=str(block.stop - 1))
    with open(folder / "out.log", "wb") as out:
        began = time.perf_counter()
        proc = spawn([JINA, "flow", "--uses", folder / "flow.yml"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL)
    try:
        deadline = began + timeout
        while time.perf_counter() < deadline:
            if gateway_answers(gateway):
                return time.perf_counter() - began
            if proc.poll() is not None:
                out = (folder / "out.log").read_text(errors="replace")
                if any(sign in out for sign in CLASH_SIGNS):
                    raise PortClash("a port of the direct run was taken")
                raise RuntimeError(f"jina flow exited with {proc.returncode}: {out[-2000:]}")
            time.sleep(0.01)
        raise TimeoutError(f"jina flow did not answer within {timeout}s")
    finally:
        end_group(proc)


def jinad_once(daemon: Daemon, workspace: str) -> float:
    began = time.perf_counter()
    flow = create(daemon, "flows", {"workspace_id": workspace, "filename": FLOW_YAML.name})
    elapsed = time.perf_counter() - began
    delete(daemon, "flows", flow["id"])
    return elapsed


def run(quick: bool, runs: int) -> list[Figure]:
    timeout = 120
    direct, daemon_s = [], []
    with tmp_root("deploy") as root, Daemon(root, "deploy") as daemon:
        workspace = upload_workspace(daemon, [FLOW_YAML, UPPER])
        if not quick:
            print(f"  warm-up direct run: {direct_once(root, -1, timeout):.2f} s (not counted)")
        for i in range(runs if quick else max(runs, 5)):  # the noisiest figure: at least 5 runs
            direct.append(direct_once(root, i, timeout))
            daemon_s.append(jinad_once(daemon, workspace))
            print(f"  run {i}: direct {direct[-1]:.2f} s, jinad {daemon_s[-1]:.2f} s")
    overhead = [d - b for d, b in zip(daemon_s, direct)]
    what = "deploy: one-executor HTTP Flow (tests/executors/flow_http.yml), POST /flows → 201"
    return [
        Figure("deploy.flow_http.s", what, "s", daemon_s, "jina flow until gateway answers", direct,
               ("ratio", "<=", 1.05), "≤ 1.05×"),
        Figure("deploy.flow_http.overhead_ms", "deploy: jinad's extra time over the direct run (paired runs)", "ms",
               [o * 1e3 for o in overhead], target=("value", "<=", 150.0), target_text="≤ 150 ms"),
    ]
