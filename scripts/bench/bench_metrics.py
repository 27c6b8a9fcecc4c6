"""6. Metrics: what one `GET /metrics` costs a daemon that holds 100 objects.

The objects are records put into the daemon's home before it starts, as `failed` (60) and
`exited` (40) Pods and Peas with `restart: no`: the daemon takes them back at start as they
are, with their logs, and starts none of them, so 100 objects cost no Jina processes. A
scrape writes every object's samples whatever their values, so its cost is that of running
objects. `wrk` (one thread, 4 connections, bearer token) keeps the daemon busy; the figure is
the daemon's time per scrape, 1 / (scrapes/s), HTTP included. Target: under 5 ms.
"""

from __future__ import annotations

import dataclasses
import shutil
import urllib.request

from jinad.ids import new_id, utc_now
from jinad.records import COLLECTION, JObject
from jinad.store import Store

from bench_rest import wrk
from common import Daemon, tmp_root
from results import Figure

TOKEN = "bench-token"
OBJECTS = 100
CONNECTIONS = 4


def put_objects(home, count: int) -> None:
    """Records of `count` objects that a starting daemon keeps as they are (failed, or exited
    with no restart policy)."""
    store = Store(home / "state")
    for i in range(count):
        kind = ("pea", "pod")[i % 2]
        obj = JObject(id=new_id(kind), kind=kind, workspace_id="jworkspace-0", spec={"uses": "Upper"}, envs={},
                      restart="no", timeout_s=60.0, created_at=utc_now(), state="failed" if i < 60 else "exited",
                      exit_code=1, restarts=i % 3, error="put there by the benchmark")
        store.save(COLLECTION, dataclasses.asdict(obj))


def run(quick: bool, runs: int) -> list[Figure]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    seconds = 3 if quick else 10
    per_scrape_ms = []
    with tmp_root("metrics") as root:
        daemon = Daemon(root, "metrics", token=TOKEN)
        put_objects(daemon.home, OBJECTS)
        with daemon:
            request = urllib.request.Request(daemon.url + "/metrics", headers=daemon.headers)
            with urllib.request.urlopen(request, timeout=30) as resp:
                text = resp.read().decode()
            samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            if text.count('kind="pea"') < 5 * OBJECTS // 2:
                raise RuntimeError(f"the daemon did not take the {OBJECTS} objects back:\n{daemon.log_tail()}")
            wrk(daemon.url + "/metrics", 1, daemon.headers, CONNECTIONS)  # warm up
            for i in range(runs):
                rps = wrk(daemon.url + "/metrics", seconds, daemon.headers, CONNECTIONS)
                per_scrape_ms.append(1000 / rps)
                print(f"  run {i}: {rps:,.0f} scrapes/s, {per_scrape_ms[-1]:.2f} ms each")
    return [Figure("metrics.scrape_100_objects.ms", f"GET /metrics with {OBJECTS} objects: daemon time per scrape",
                   "ms", per_scrape_ms, target=("value", "<=", 5.0), target_text="≤ 5 ms",
                   note=f"{samples} samples, {len(text) / 1024:.0f} KiB; wrk -t1 -c{CONNECTIONS}, {seconds} s per run")]
