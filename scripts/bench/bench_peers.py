"""6. Peers: supervisord (pip `supervisor`, in its own venv under /tmp, never in jinad's).

supervisord runs the same ticker as a plain script (1,000 timestamped lines/s) with its stdout
in a log file; subscribers follow it over supervisord's HTTP `GET /logtail/<program>`, and
the latency is write → receipt as for jinad. Its idle RSS is taken with the program started
but not yet writing (as jinad's idle figure has no object at all, compare with care).
"""

from __future__ import annotations

import array
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_logs import percentile
from common import EXECUTORS, PORTS, end_group, settle_rss, spawn, tmp_root, wait_until, is_free
from objects import SseClients
from results import Figure

VENV = Path("/tmp/jinad-bench-peers-venv")
SUBSCRIBERS = 10


def supervisor_python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "supervisord").exists():
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=120)
        subprocess.run([python, "-m", "pip", "install", "-q", "supervisor"], check=True, timeout=300)
    return python


CONFIG = """\
[supervisord]
nodaemon=true
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
childlogdir={root}
[inet_http_server]
port=127.0.0.1:{port}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:ticker]
command={python} {ticker} {rate} {seconds} {go}
autostart=true
autorestart=false
startsecs=0
stdout_logfile={root}/ticker.log
environment=PYTHONUNBUFFERED="1"
"""


def run(quick: bool, runs: int) -> list[Figure]:
    python = supervisor_python()
    seconds, rate = (5, 1000) if quick else (20, 1000)
    idle, p50s, p99s, notes = [], [], [], []
    for i in range(runs):
        with tmp_root("peers") as root:
            port = PORTS.api()
            go = root / "go"
            (root / "supervisord.conf").write_text(CONFIG.format(
                root=root, port=port, python=sys.executable, ticker=EXECUTORS / "ticker.py", rate=rate, seconds=seconds, go=go))
            proc = spawn([VENV / "bin" / "supervisord", "-c", root / "supervisord.conf"], cwd=root,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: not is_free(port), 30, "supervisord's HTTP port")
                time.sleep(2)
                idle.append(settle_rss(proc.pid))
                with SseClients("latency", f"http://127.0.0.1:{port}/logtail/ticker", SUBSCRIBERS, 1,
                                timeout=seconds + 60, samples_dir=root, plain=True) as clients:
                    clients.wait_ready()
                    go.touch()
                    per = clients.results(seconds + 90)
                    samples = array.array("d")
                    for path in clients.samples:
                        samples.frombytes(path.read_bytes())
            finally:
                end_group(proc)
        values = sorted(samples)
        p50s.append(percentile(values, 0.5) * 1e3)
        p99s.append(percentile(values, 0.99) * 1e3)
        notes.append(f"{len(values)}/{int(rate * seconds) * SUBSCRIBERS} lines")
        print(f"  supervisord run {i}: idle {idle[-1] / 1e6:.1f} MB, p50 {p50s[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms, {notes[-1]}")
    setup = f"{rate:,} lines/s, {SUBSCRIBERS} HTTP logtail followers"
    return [
        Figure("peers.supervisord.idle_rss_mb", "peer: supervisord RSS idle (one program configured)", "MB", [v / 1e6 for v in idle]),
        Figure("peers.supervisord.logtail_p50_ms", f"peer: supervisord log latency p50 ({setup})", "ms", p50s),
        Figure("peers.supervisord.logtail_p99_ms", f"peer: supervisord log latency p99 ({setup})", "ms", p99s,
               note="; ".join(notes)),
    ]
