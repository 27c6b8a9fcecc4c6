"""jinad's benchmark suite: `.venv/bin/python scripts/bench/run.py [--quick] [--only NAME ...]`.

Each benchmark starts and stops its own daemons (temporary homes, loopback, ports 32000-32699)
and measures a baseline in the same run on the same machine. Every figure is the median of
several runs. Results: a Markdown table on stdout and scripts/bench/results/results.json, and
a plot of log latency against subscribers, results/latency.png (plot.py).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402

import bench_deploy  # noqa: E402
import bench_hosts  # noqa: E402
import bench_logs  # noqa: E402
import bench_memory  # noqa: E402
import bench_metrics  # noqa: E402
import bench_parts  # noqa: E402
import bench_peers  # noqa: E402
import bench_rest  # noqa: E402
import bench_restore  # noqa: E402
import common  # noqa: E402
import plot  # noqa: E402
from common import BENCH  # noqa: E402
from results import Figure, markdown  # noqa: E402

BENCHMARKS = {
    "logs": bench_logs.throughput,
    "latency": bench_logs.latency,
    "rest": bench_rest.run,
    "deploy": bench_deploy.run,
    "memory": bench_memory.run,
    "metrics": bench_metrics.run,
    "peers": bench_peers.run,
    "restore": bench_restore.run,
    "parts": bench_parts.run,
    "hosts": bench_hosts.run,
}


def raise_fd_limit() -> None:
    """1,000 SSE clients need more than the usual 1,024 descriptors (daemons inherit this)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def source_digest() -> str:
    """A digest of jinad's sources: which code these figures belong to (the tree changes often)."""
    digest = hashlib.sha256()
    for path in sorted((common.REPO / "jinad").rglob("*.py")):
        digest.update(path.relative_to(common.REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def exit_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` ends its processes."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run (a few minutes)")
    parser.add_argument("--runs", type=int, help="runs per figure (default: 3, quick: 1)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[], help="skip these benchmarks")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "results.json")
    parser.add_argument("--profile", action="store_true",
                        help="record every daemon with py-spy into results/profiles/ (slows the daemon a little)")
    args = parser.parse_args()
    if args.profile:
        common.PROFILE_DIR = args.out.parent / "profiles"
    runs = args.runs or (1 if args.quick else 3)
    raise_fd_limit()
    exit_on_sigterm()

    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    if args.quick and not args.only and "peers" in names:
        names.remove("peers")  # installs supervisor: not a smoke check
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    loads: dict[str, list[float]] = {}
    digest = source_digest()
    began = time.monotonic()
    for name in names:
        print(f"== {name} (load average {os.getloadavg()[0]:.2f})", flush=True)
        loads[name] = [round(os.getloadavg()[0], 2)]
        t0 = time.monotonic()
        try:
            figures += BENCHMARKS[name](args.quick, runs)
        except Exception:  # (SIGTERM's SystemExit passes: the `finally`s clean up, then we stop)
            errors[name] = traceback.format_exc()
            print(f"!! {name} failed:\n{errors[name]}", file=sys.stderr, flush=True)
        loads[name].append(round(os.getloadavg()[0], 2))
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)

    mem = psutil.virtual_memory()
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "runs_per_figure": runs,
        "machine": {"cpus": os.cpu_count(), "memory_total": mem.total, "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "seconds": round(time.monotonic() - began, 1),
        "jinad_sources_sha256": digest,
        "load_average_before_after": loads,
        "figures": [f.to_json() for f in figures],
        "errors": errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print(f"jinad benchmarks ({'quick' if args.quick else 'full'}; median of {runs} run(s); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {report['seconds']:.0f} s; jinad sources {digest})\n")
    print(markdown(figures))
    if errors:
        print(f"\nfailed: {', '.join(errors)} (see stderr)")
    print(f"\nwritten to {args.out}")
    if any(f.key.startswith("logs.latency.") for f in figures):  # a warning at worst, never a failed run
        plot.render(args.out, args.out.parent / "latency.png")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
