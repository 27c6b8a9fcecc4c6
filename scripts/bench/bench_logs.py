"""1. Log pipeline throughput and 2. log latency.

Throughput: a Pea (executors/flood.py) writes N lines of 100 bytes as fast as it can; the figure
is the writer's own wall time, measured inside the child. Under jinad the lines go through the
pipe into the daemon's ring buffer and log file (and to SSE subscribers); the baseline is the
same loop as a plain script piped into `cat > /dev/null`. Subscribers are sse_client.py
processes counting every flood line; each one's rate is lines / (receipt of the last line -
first write).

Latency: a Pea (executors/ticker.py) prints 1,000 lines/s, each carrying time.time() of its
write; subscribers take the receipt time just after the socket read that brought the line. The
same run at 1, 10 and 100 subscribers (quick: 1 and 20); the last count is the headline figure.
"""

from __future__ import annotations

import array
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

from common import (EXECUTORS, JINA, PORTS, PYTHON, Daemon, child_env, end_group, is_free, spawn, tmp_root,
                    upload_workspace, wait_until)
from objects import SseClients, create, delete, wait_log_line
from results import Figure

FLOOD = EXECUTORS / "flood.py"
TICKER = EXECUTORS / "ticker.py"
CLIENT_CONNECTIONS_PER_PROCESS = 50
SLOWEST_TARGET = {10: 300_000, 100: 60_000}  # lines/s to the slowest subscriber


def flood_baseline(lines: int, timeout: float) -> float:
    """The writer's wall time for `python flood.py N | cat > /dev/null`."""
    proc = spawn(["sh", "-c", f'"$0" "$1" {lines} | cat > /dev/null', PYTHON, FLOOD],
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        end_group(proc)
    return float(err.split()[-1])


def flood_jina_direct(root: Path, run: str, lines: int, timeout: float) -> float:
    """The writer's wall time for the same Executor under `jina executor ... | cat > /dev/null`."""
    folder = root / f"direct-{run}"
    (folder / "home").mkdir(parents=True)
    report = folder / "elapsed"
    port = next(p for p in PORTS.block() if is_free(p))
    uses_with = json.dumps({"lines": lines, "report_file": str(report)})
    argv = [JINA, "executor", "--uses", "Flood", "--py-modules", FLOOD, "--port", port, "--uses-with", uses_with]
    proc = spawn(["sh", "-c", '"$@" | cat > /dev/null', "sh", *map(str, argv)], cwd=folder, env=child_env(HOME=str(folder / "home")),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_until(report.exists, timeout, "the directly run Flood executor")
        return float(report.read_text())
    finally:
        end_group(proc)


def client_processes(connections: int) -> int:
    return max(1, math.ceil(connections / CLIENT_CONNECTIONS_PER_PROCESS))


def flood_once(daemon: Daemon, workspace: str, root: Path, run: str, lines: int, subscribers: int, timeout: float) -> dict:
    """One flood under jinad: the writer's time and what each subscriber received."""
    go = root / f"go-{run}"
    pea = create(daemon, "peas", {"workspace_id": workspace, "uses": "Flood", "py_modules": ["flood.py"],
                                  "uses_with": {"lines": lines, "go_file": str(go)}})
    clients = None
    try:
        if subscribers:
            clients = SseClients("count", f"{daemon.url}/logs/{pea['id']}?tail=0", subscribers,
                                 client_processes(subscribers), daemon.token, timeout=timeout)
            clients.wait_ready()
        cpu = daemon.cpu_s()
        go.touch()
        done = wait_log_line(daemon, pea["id"], "flood done", timeout)
        child_s = float(done.split()[3])
        out = {"child_s": child_s, "lines": lines, "daemon_cpu_s": daemon.cpu_s() - cpu}
        if clients:
            per = clients.results(timeout + 30)
            rates, delivered = [], 0
            for c in per:
                complete = c.get("done_at") is not None and c.get("lines") == lines
                delivered += complete
                end = c.get("done_at") or c.get("last_at")
                began = c.get("began") or float(done.split()[4])
                rates.append((c.get("lines") or 0) / (end - began) if end else 0.0)
            out.update(rates=rates, complete=delivered, subscribers=len(per),
                       received=sum(c.get("lines") or 0 for c in per))
        return out
    finally:
        if clients:
            clients.close()
        delete(daemon, "peas", pea["id"])


def throughput(quick: bool, runs: int) -> list[Figure]:
    lines = 100_000 if quick else 1_000_000
    sub_counts = (10, 100)
    # 100 subscribers get fewer lines: at the rate they are served a run would take minutes;
    # the rate is a steady state, so it does not depend on the run's length.
    sub_lines = {10: lines, 100: 250_000} if not quick else {10: lines, 100: 20_000}
    timeout = 120 if quick else 300
    flood_baseline(lines, timeout)  # warm-up: page cache, first start of the interpreter
    baseline = [flood_baseline(lines, timeout) for _ in range(runs)]
    print(f"  baseline (plain script | cat): {[round(b, 3) for b in baseline]} s")
    figures = []
    with tmp_root("logs") as root, Daemon(root, "logs") as daemon:
        in_jina = [flood_jina_direct(root, str(i), lines, timeout) for i in range(runs)]
        print(f"  the Executor under jina executor | cat: {[round(b, 3) for b in in_jina]} s")
        workspace = upload_workspace(daemon, [FLOOD])
        runs_alone = [flood_once(daemon, workspace, root, f"0-{i}", lines, 0, timeout) for i in range(runs)]
        alone = [r["child_s"] for r in runs_alone]
        cpu_us = [r["daemon_cpu_s"] / lines * 1e6 for r in runs_alone]
        print(f"  jinad, no subscriber: {[round(a, 3) for a in alone]} s; daemon CPU {[round(c, 2) for c in cpu_us]} µs/line")
        figures.append(Figure(
            "logs.flood.no_subscriber.child_s", f"log pipeline: {lines:,} lines × 100 B, writer's wall time, no subscriber",
            "s", alone, "same loop \\| cat > /dev/null", baseline, ("ratio", "<=", 1.3), "≤ 1.3×"))
        figures.append(Figure(
            "logs.flood.no_subscriber.daemon_cpu_us_per_line", "log pipeline: daemon CPU per line (user + system), no subscriber",
            "µs", cpu_us, note="less noisy than wall times on a shared machine"))
        figures.append(Figure(
            "logs.flood.jina_direct.child_s", "log pipeline, for reference: the same Executor under `jina executor` \\| cat",
            "s", in_jina, "same loop \\| cat > /dev/null", baseline,
            note="the share of the gap that is Jina's runtime (its threads and the GIL), not jinad"))
        for subs in sub_counts:
            n = sub_lines[subs]
            base = baseline if n == lines else [flood_baseline(n, timeout) for _ in range(runs)]
            results = []
            for i in range(runs):
                results.append(flood_once(daemon, workspace, root, f"{subs}-{i}", n, subs, timeout))
                r = results[-1]
                print(f"  jinad, {subs} subscribers: writer {r['child_s']:.3f} s, slowest {min(r['rates']):,.0f} lines/s, "
                      f"median {statistics.median(r['rates']):,.0f}, complete {r['complete']}/{r['subscribers']}")
            complete = sum(r["complete"] for r in results)
            total = sum(r["subscribers"] for r in results)
            received = sum(r["received"] for r in results) / (n * total)
            procs = client_processes(subs)
            cpu_us = [r["daemon_cpu_s"] / r["lines"] / subs * 1e6 for r in results]
            cpu_target = dict(target=("value", "<=", 0.2), target_text="≤ 0.2 µs") if subs == 10 else {}
            figures.append(Figure(
                f"logs.flood.{subs}_subscribers.daemon_cpu_us_per_line_and_subscriber",
                f"log pipeline: daemon CPU per line and subscriber, {subs} subscribers", "µs", cpu_us, **cpu_target))
            figures.append(Figure(
                f"logs.flood.{subs}_subscribers.child_s", f"log pipeline: {n:,} lines, writer's wall time, {subs} SSE subscribers",
                "s", [r["child_s"] for r in results], "same loop \\| cat > /dev/null", base, ("ratio", "<=", 1.3), "≤ 1.3×"))
            figures.append(Figure(
                f"logs.flood.{subs}_subscribers.slowest_lines_per_s",
                f"log pipeline: lines/s to the slowest of {subs} SSE subscribers ({procs} client process(es))",
                "lines/s", [min(r["rates"]) for r in results], target=("value", ">=", SLOWEST_TARGET[subs]),
                target_text=f"≥ {SLOWEST_TARGET[subs]:,}",
                note=f"every line delivered to {complete}/{total} subscriber-runs ({received:.1%} of lines); "
                     f"median subscriber {statistics.median([x for r in results for x in r['rates']]):,.0f} lines/s"))
    return figures


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


LATENCY_RATE = 1000
LATENCY_CLIENT_PROCESSES = 2


def latency_points(quick: bool) -> list[tuple[int, float]]:
    """(subscribers, seconds) of each latency point; the last one is the headline (its figures
    keep the plain keys `logs.latency.*` and the p99 target)."""
    return [(1, 5), (20, 5)] if quick else [(1, 10), (10, 10), (100, 20)]


def latency_run(daemon: Daemon, workspace: str, root: Path, run: str, subscribers: int, seconds: float) -> dict:
    """One ticker Pea (LATENCY_RATE lines/s for `seconds`) followed by `subscribers` SSE clients:
    write → receipt latencies (ms) and the daemon's CPU meanwhile (% of one core)."""
    go = root / f"go-{run}"
    pea = create(daemon, "peas", {"workspace_id": workspace, "uses": "Ticker", "py_modules": ["ticker.py"],
                                  "uses_with": {"rate": LATENCY_RATE, "seconds": seconds, "go_file": str(go)}})
    run_dir = root / f"run-{run}"
    run_dir.mkdir()
    try:
        with SseClients("latency", f"{daemon.url}/logs/{pea['id']}?tail=0", subscribers, LATENCY_CLIENT_PROCESSES,
                        daemon.token, timeout=seconds + 60, samples_dir=run_dir) as clients:
            clients.wait_ready()
            cpu, began = daemon.cpu_s(), time.monotonic()
            go.touch()
            per = clients.results(seconds + 90)
            cpu_percent = (daemon.cpu_s() - cpu) / (time.monotonic() - began) * 100
            samples = array.array("d")
            for path in clients.samples:
                samples.frombytes(path.read_bytes())
    finally:
        delete(daemon, "peas", pea["id"])
    values = sorted(samples)
    if not values:
        raise RuntimeError(f"no tick line reached any of {subscribers} SSE subscribers: {per}")
    expected = int(LATENCY_RATE * seconds) * subscribers
    gaps = sum(c.get("gaps", 0) for c in per)
    return {"p50_ms": percentile(values, 0.50) * 1e3, "p99_ms": percentile(values, 0.99) * 1e3,
            "max_ms": values[-1] * 1e3, "cpu_percent": cpu_percent, "note": f"{len(values)}/{expected} lines, {gaps} gaps"}


def latency_figures(prefix: str, subscribers: int, seconds: float, results: list[dict], headline: bool) -> list[Figure]:
    procs = min(subscribers, LATENCY_CLIENT_PROCESSES)
    setup = (f"{LATENCY_RATE:,} lines/s for {seconds:g} s, {subscribers} SSE subscriber{'s' * (subscribers != 1)} "
             f"in {procs} client process{'es' * (procs != 1)}")
    params = {"subscribers": subscribers, "seconds": seconds, "rate": LATENCY_RATE}
    maxes = statistics.median(r["max_ms"] for r in results)
    target = dict(target=("value", "<=", 5.0), target_text="≤ 5 ms") if headline else {}
    cpu_target = dict(target=("value", "<=", 25.0), target_text="≤ 25 %") if headline else {}
    return [
        Figure(f"{prefix}.p50_ms", f"log latency p50, write → SSE receipt ({setup})", "ms",
               [r["p50_ms"] for r in results], params=params),
        Figure(f"{prefix}.p99_ms", f"log latency p99, write → SSE receipt ({setup})", "ms", [r["p99_ms"] for r in results],
               note=f"max {maxes:.1f} ms; " + "; ".join(r["note"] for r in results), params=params, **target),
        Figure(f"{prefix}.daemon_cpu_percent", f"log latency run: daemon CPU, % of one core ({setup})", "%",
               [r["cpu_percent"] for r in results], params=params, **cpu_target),
    ]


def latency(quick: bool, runs: int) -> list[Figure]:
    """Write → receipt latency at several subscriber counts, the points interleaved in each run
    (so slow drifts of the machine's load hit them alike)."""
    points = latency_points(quick)
    results: dict[int, list[dict]] = {subs: [] for subs, _ in points}
    with tmp_root("latency") as root, Daemon(root, "latency") as daemon:
        workspace = upload_workspace(daemon, [TICKER])
        for i in range(runs):
            for subs, seconds in points:
                r = latency_run(daemon, workspace, root, f"{subs}-{i}", subs, seconds)
                results[subs].append(r)
                print(f"  latency run {i}, {subs} subscriber(s): p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                      f"max {r['max_ms']:.1f} ms, {r['note']}, daemon CPU {r['cpu_percent']:.0f}% of a core", flush=True)
    headline_subs, headline_seconds = points[-1]
    figures = latency_figures("logs.latency", headline_subs, headline_seconds, results[headline_subs], headline=True)
    for subs, seconds in points[:-1]:
        figures += latency_figures(f"logs.latency.{subs}_subscribers", subs, seconds, results[subs], headline=False)
    return figures
