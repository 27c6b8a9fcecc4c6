"""Live restore across a `kill -9` of the daemon: a gRPC Flow answering a steady request loop
(Jina's own Client) and a Pea printing a numbered line every millisecond, while the daemon is
killed and started again 3 s later. Figures: failed requests, lost lines, seconds from the new
daemon's start to every object `ready`, and memory of the mechanism (the keeper) per object."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import psutil

from common import PYTHON, TESTS_EXECUTORS, Daemon, http_json, mb, tmp_root, upload_workspace
from results import Figure

OUTAGE_S = 3.0
TICKS = 10_000
# From the line's start: Jina's own log line, printed by another thread of the child at the same
# moment, can land on the same line as a tick ("tick 4INFO ... server bound"): not a lost tick.
TICK = re.compile(r"^tick (\d+)(?!\d)")
CLIENT_LOOP = """
import select, sys, time
from docarray import DocList
from docarray.documents import TextDoc
from jina import Client
client = Client(host="127.0.0.1", port=int(sys.argv[1]), protocol="grpc")
ok = failed = 0
print("looping", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    try:
        docs = client.post("/", inputs=DocList[TextDoc]([TextDoc(text="a")]), return_type=DocList[TextDoc])
        ok += docs[0].text == "A!"
        failed += docs[0].text != "A!"
    except Exception:
        failed += 1
    time.sleep(0.01)
print(ok, failed, flush=True)
"""


def _create(daemon: Daemon, plural: str, body: dict) -> dict:
    status, obj = http_json("POST", f"{daemon.url}/{plural}", body)
    assert status == 201, obj
    return obj


def keepers(home) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[3:4] == ["jinad-keeper"]
            and str(home) in p.info["cmdline"]]


def once(root, i: int) -> dict:
    daemon = Daemon(root, f"restore-{i}")
    daemon.start()
    try:
        ws = upload_workspace(daemon, [TESTS_EXECUTORS / "flow_grpc.yml", TESTS_EXECUTORS / "upper.py", TESTS_EXECUTORS / "ticker.py"])
        flow = _create(daemon, "flows", {"workspace_id": ws, "filename": "flow_grpc.yml"})
        pea = _create(daemon, "peas", {"workspace_id": ws, "uses": "Ticker", "py_modules": ["ticker.py"],
                                       "uses_with": {"ticks": TICKS}})
        memory = [p.memory_full_info() for p in keepers(daemon.home)]
        loop = subprocess.Popen([PYTHON, "-c", CLIENT_LOOP, str(flow["ports"]["gateway"])], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert loop.stdout.readline().strip() == "looping"
        time.sleep(1.0)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        time.sleep(OUTAGE_S)
        began = time.monotonic()
        daemon.start()
        listening = time.monotonic()
        while True:
            states = [http_json("GET", f"{daemon.url}/{plural}/{obj['id']}")[1]["state"] for plural, obj in
                      (("flows", flow), ("peas", pea))]
            if states == ["ready", "ready"]:
                break
            time.sleep(0.01)
        ready = time.monotonic()
        same = http_json("GET", f"{daemon.url}/flows/{flow['id']}")[1]["pid"] == flow["pid"]
        time.sleep(TICKS / 1000 + 1)
        out, _ = loop.communicate("x", timeout=60)
        ok, failed = map(int, out.split()[-2:])
        with urllib.request.urlopen(f"{daemon.url}/logs/{pea['id']}?tail=all&follow=false") as resp:
            text = resp.read().decode()
        numbers = [int(m.group(1)) for line in text.splitlines() if (m := TICK.match(line))]
        lost = TICKS - len(set(numbers)) + (len(numbers) - len(set(numbers))) + (numbers != sorted(numbers))
        return {"failed": failed, "ok": ok, "lost": lost, "same_pids": same, "to_ready_s": ready - began,
                "listening_to_ready_s": ready - listening, "keeper_rss": [m.rss for m in memory],
                "keeper_uss": [m.uss for m in memory], "keeper_pss": [m.pss for m in memory]}
    finally:
        daemon.stop()


def run(quick: bool, runs: int) -> list[Figure]:
    results = []
    with tmp_root("restore") as root:
        for i in range(1 if quick else runs):
            results.append(once(root, i))
            print("  " + json.dumps({k: v for k, v in results[-1].items() if not k.startswith("keeper")}))
    rss = [max(r["keeper_rss"]) for r in results]
    uss = [max(r["keeper_uss"]) for r in results]
    return [
        Figure("restore.kill9.failed_requests", "live restore: failed requests (Jina Client, every 10 ms) across a daemon kill -9 + restart 3 s later",
               "requests", [r["failed"] for r in results], target=("value", "<=", 0), target_text="0",
               note=f"answered: {[r['ok'] for r in results]}; same pids: {all(r['same_pids'] for r in results)}"),
        Figure("restore.kill9.lost_lines", f"live restore: lines lost or repeated of a Pea printing one a millisecond ({TICKS}) across the outage",
               "lines", [r["lost"] for r in results], target=("value", "<=", 0), target_text="0"),
        Figure("restore.kill9.listening_to_ready_s", "live restore: new daemon listens → every object `ready` (a Flow, a Pea)", "s",
               [r["listening_to_ready_s"] for r in results], target=("value", "<=", 1.0), target_text="≤ 1 s",
               note=f"from the new daemon's exec: {[round(r['to_ready_s'], 2) for r in results]} s (its own start)"),
        Figure("restore.keeper.rss_mb", "live restore: keeper per object (/bin/sh), RSS", "MB", [mb(v) for v in rss],
               target=("value", "<=", 2.0), target_text="≤ 2 MB", note=f"USS {[round(mb(v), 2) for v in uss]} MB"),
    ]
