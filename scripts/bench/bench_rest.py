"""3. REST: requests/s of an authenticated `GET /flows/{id}` against a bare aiohttp+uvloop
hello-world, both loaded by the same `wrk` (one thread, so the server under test keeps the
other core), runs interleaved. `GET /` of jinad (no auth, `{}`) is measured too: it shows what
the framework and middlewares cost apart from the handler."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from common import TESTS_EXECUTORS, Daemon, end_group, hello_world, spawn, tmp_root, upload_workspace
from objects import create, delete
from results import Figure

TOKEN = "bench-token"
CONNECTIONS = 32


def wrk(url: str, seconds: int, headers: dict[str, str], connections: int = CONNECTIONS) -> float:
    """Requests/s; raises when any answer was not 2xx (a 401 would be fast and meaningless)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    proc = spawn([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        end_group(proc)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])


def run(quick: bool, runs: int) -> list[Figure]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    seconds = 3 if quick else 10
    hello_rps, flow_rps, root_rps = [], [], []
    with tmp_root("rest") as root, Daemon(root, "rest", token=TOKEN) as daemon, hello_world() as (hello_port, _):
        workspace = upload_workspace(daemon, [TESTS_EXECUTORS / "flow_http.yml", TESTS_EXECUTORS / "upper.py"])
        flow = create(daemon, "flows", {"workspace_id": workspace, "filename": "flow_http.yml"})
        try:
            time.sleep(2)  # let the Flow settle (its start-up work is not the daemon's)
            wrk(f"http://127.0.0.1:{hello_port}/", 1, {})  # warm both up
            wrk(f"{daemon.url}/flows/{flow['id']}", 1, daemon.headers)
            for i in range(runs):
                hello_rps.append(wrk(f"http://127.0.0.1:{hello_port}/", seconds, {}))
                flow_rps.append(wrk(f"{daemon.url}/flows/{flow['id']}", seconds, daemon.headers))
                root_rps.append(wrk(f"{daemon.url}/", seconds, {}))
                print(f"  run {i}: hello {hello_rps[-1]:,.0f}, GET /flows/id {flow_rps[-1]:,.0f}, GET / {root_rps[-1]:,.0f} req/s")
        finally:
            delete(daemon, "flows", flow["id"])
    setup = f"wrk -t1 -c{CONNECTIONS}, {seconds} s per run"
    return [
        Figure("rest.get_flow.rps", f"REST: GET /flows/{{id}} with bearer token ({setup})", "req/s", flow_rps,
               "aiohttp+uvloop hello-world", hello_rps, ("ratio", ">=", 0.85), "≥ 0.85×"),
        Figure("rest.get_root.rps", "REST: GET / of jinad (no auth, `{}`): the framework's share", "req/s", root_rps,
               "aiohttp+uvloop hello-world", hello_rps, ("ratio", ">=", 0.9), "≥ 0.9×"),
    ]
