"""5. Memory: the daemon's RSS (psutil, on the daemon's pid only; its children are not counted).

- idle: a fresh daemon, 2 s after it answers;
- upload: `POST /workspaces` of one 200 MB file with curl; peak RSS (sampled every 5 ms) minus
  the RSS before, and MB/s over the whole request (receive, write, fsync, answer);
- Flows: N one-executor HTTP Flows started one after the other (N = 20, or fewer when the
  machine's available memory would drop under a safety margin); per-Flow growth is the slope
  from the first to the last Flow (the first Flow's one-time costs excluded), compared with
  what each Flow's ring buffer holds (its log lines);
- SSE clients: 1,000 idle `GET /logs/{id}` streams (two client processes), growth per client.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from common import (CHILD_BLOCKS, CLASH_SIGNS, TESTS_EXECUTORS, Daemon, PeakRss, hello_world, http_json, mb, settle_rss, tmp_root,
                    upload_workspace)
from objects import SseClients, delete
from results import Figure

FLOW_YAML = TESTS_EXECUTORS / "flow_http.yml"
UPPER = TESTS_EXECUTORS / "upper.py"
FLOW_RSS_GUESS = 400e6  # a Flow's whole tree is ~290 MB RSS; keep room for one more
SAFETY_MARGIN = 6e9  # leave this much available to the rest of the machine (another engineer's tests)


def upload_once(daemon: Daemon, path: Path) -> tuple[float, int]:
    """(seconds, peak RSS growth in bytes) of one upload; the workspace is deleted after."""
    before = settle_rss(daemon.pid, 0.5)
    argv = ["curl", "-sS", "--fail-with-body", "-m", "600", "-H", "Expect:", "-X", "POST", daemon.url + "/workspaces",
            "-F", f"files=@{path};filename={path.name}"]
    with PeakRss(daemon.pid) as peak:
        began = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, timeout=620)
        elapsed = time.perf_counter() - began
    if out.returncode != 0:
        raise RuntimeError(f"upload failed: {out.stdout[-500:]!r} {out.stderr[-500:]!r}")
    workspace = json.loads(out.stdout)["id"]
    req = urllib.request.Request(f"{daemon.url}/workspaces/{workspace}", method="DELETE", headers=daemon.headers)
    urllib.request.urlopen(req, timeout=60).read()
    return elapsed, peak.peak - before


def start_flow(daemon: Daemon, workspace: str, collisions: list[str]) -> dict:
    """A Flow, retried (up to 3 times) when its start failed on a port taken in the meantime:
    jinad lets Jina pick its internal ports (JINA_RANDOM_PORT_MIN/MAX) from the very range it
    hands out, so Jina can take a port jinad gave a gateway that has not bound it yet."""
    for attempt in range(3):
        status, obj = http_json("POST", f"{daemon.url}/flows", {"workspace_id": workspace, "filename": FLOW_YAML.name},
                                daemon.headers, timeout=180)
        if status == 201:
            return obj
        clash = status == 422 and any(sign in line for line in obj.get("log_tail", []) for sign in CLASH_SIGNS)
        if not clash or attempt == 2:
            raise RuntimeError(f"POST /flows answered {status}: {json.dumps(obj)[:2000]}")
        collisions.append(obj["id"])
        print(f"  Flow {obj['id']} failed on a port clash; retrying")
        delete(daemon, "flows", obj["id"])
    raise AssertionError("unreachable")


def ring_bytes(daemon: Daemon, object_id: str) -> tuple[int, int]:
    """(lines, bytes of text) the object's log holds in memory (the ring keeps all of a Flow's start-up)."""
    req = urllib.request.Request(f"{daemon.url}/logs/{object_id}?tail=all&follow=false", headers=daemon.headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
    return text.count(b"\n"), len(text)


def run(quick: bool, runs: int) -> list[Figure]:
    upload_mb = 20 if quick else 200
    want_flows = 3 if quick else 20
    sse_clients = 100 if quick else 1000
    figures = []
    with tmp_root("memory") as root:
        big = root / "big.bin"
        with open(big, "wb") as f:
            for _ in range(upload_mb):
                f.write(os.urandom(1_000_000))

        idle, hello_idle, up_s, up_growth = [], [], [], []
        for i in range(runs):
            with hello_world() as (_, hello):
                time.sleep(2)
                hello_idle.append(settle_rss(hello.pid))
            with Daemon(root, f"idle-{i}") as daemon:
                time.sleep(2)
                idle.append(settle_rss(daemon.pid))
                upload_once(daemon, big)  # warm-up: the first upload imports and allocates for good
                for _ in range(2):
                    seconds, growth = upload_once(daemon, big)
                    up_s.append(seconds)
                    up_growth.append(growth)
                print(f"  daemon {i}: idle {mb(idle[-1]):.1f} MB; uploads {[round(s, 2) for s in up_s[-2:]]} s, "
                      f"peak growth {[round(mb(g), 1) for g in up_growth[-2:]]} MB")
        figures += [
            Figure("memory.idle.rss_mb", "memory: daemon RSS idle (fresh daemon)", "MB", [mb(v) for v in idle],
                   "aiohttp+uvloop hello-world, idle", [mb(v) for v in hello_idle], ("difference", "<=", 2.0),
                   "≤ hello-world + 2 MB", note=f"{mb(statistics.median(idle)) - mb(statistics.median(hello_idle)):+.1f} MB"),
            Figure("memory.upload.peak_growth_mb", f"memory: peak RSS growth during a {upload_mb} MB upload (curl -F)", "MB",
                   [mb(v) for v in up_growth], target=("value", "<=", 20.0), target_text="≤ 20 MB",
                   note="after one warm-up upload per daemon"),
            Figure("memory.upload.mb_per_s", f"upload speed of a {upload_mb} MB workspace, incl. fsync", "MB/s",
                   [upload_mb / s for s in up_s], target=("value", ">=", 200.0), target_text="≥ 200 MB/s"),
        ]

        # Many Flows: a wide range, as Jina's own random ports share it (see start_flow).
        daemon = Daemon(root, "flows", port_range=range(CHILD_BLOCKS[0].start, CHILD_BLOCKS[-1].stop))
        flows: list[dict] = []
        try:
            daemon.start()
            workspace = upload_workspace(daemon, [FLOW_YAML, UPPER])
            time.sleep(1)
            rss = [settle_rss(daemon.pid)]
            rings, collisions = [], []
            for i in range(want_flows):
                if psutil.virtual_memory().available - FLOW_RSS_GUESS < SAFETY_MARGIN:
                    print(f"  stopping at {len(flows)} Flows: {psutil.virtual_memory().available / 1e9:.1f} GB available")
                    break
                flows.append(start_flow(daemon, workspace, collisions))
                time.sleep(0.5)
                rss.append(settle_rss(daemon.pid))
                rings.append(ring_bytes(daemon, flows[-1]["id"]))
            n = len(flows)
            time.sleep(3)  # a few resource samples of every Flow
            rss[-1] = settle_rss(daemon.pid, 2.0)
            per_flow = (rss[-1] - rss[1]) / (n - 1) if n > 1 else None
            ring_lines = sum(r[0] for r in rings) / n
            ring_text = sum(r[1] for r in rings) / n
            print(f"  {n} Flows: daemon RSS {[round(mb(r), 1) for r in rss]} MB; ring per Flow {ring_lines:.0f} lines, "
                  f"{ring_text / 1e3:.1f} kB of text")
            figures += [
                Figure("memory.flows.per_flow_mb", f"memory: daemon RSS growth per Flow (slope over {n} real Flows)", "MB",
                       [mb(per_flow)], target=("value", "<=", 2.0), target_text="≤ 2 MB + ring",
                       note=f"ring holds {ring_lines:.0f} lines / {ring_text / 1e3:.1f} kB text per Flow; "
                            f"idle {mb(rss[0]):.1f} MB → {mb(rss[-1]):.1f} MB with {n} Flows; "
                            f"{len(collisions)} start(s) retried after a port clash"),
                Figure("memory.flows.total_mb", f"memory: daemon RSS with {n} Flows", "MB", [mb(rss[-1])]),
            ]

            before = settle_rss(daemon.pid)
            with SseClients("idle", f"{daemon.url}/logs/{flows[0]['id']}?tail=0", sse_clients, 2, daemon.token) as clients:
                clients.wait_ready(timeout=120)
                time.sleep(1)
                after = settle_rss(daemon.pid)
            print(f"  {sse_clients} idle SSE clients: {mb(before):.1f} → {mb(after):.1f} MB")
            figures.append(Figure(
                "memory.sse_idle.per_client_kb", f"memory: daemon RSS growth per idle SSE client ({sse_clients} clients)", "kB",
                [(after - before) / sse_clients / 1e3], note=f"{mb(before):.1f} → {mb(after):.1f} MB"))
        finally:
            daemon.stop()
        print(f"  daemon stop with {len(flows)} Flows: {daemon.exit_s:.1f} s{' (SIGKILLed)' if daemon.killed else ''}")
        figures.append(Figure(
            "memory.flows.shutdown_s", f"daemon stop with {len(flows)} Flows: SIGTERM → exit (every child ended)", "s",
            [daemon.exit_s], note="it did not exit within 60 s and was SIGKILLed" if daemon.killed else ""))
    return figures
