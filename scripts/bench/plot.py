"""Log latency against the number of SSE subscribers, as a PNG, from a results.json.

  .venv/bin/python scripts/bench/plot.py [--results R] [--png P] [--publish]

Reads scripts/bench/results/results.json (run.py's output) and writes results/latency.png: p50
and p99 of jinad's write → SSE receipt latency at each subscriber count measured (median of the
runs, whiskers from the fastest to the slowest run), the p99 target, and supervisord's logtail
p50 / p99 (10 followers) as reference markers when the `peers` figures are in the same file.
`--publish` also copies the PNG to scripts/bench/latency.png (the one the README shows).

matplotlib lives in its own venv, /tmp/jinad-bench-plot-venv (never in jinad's .venv), made on
demand; started with another interpreter, this script re-runs itself there. run.py calls
`render()` after a run that has latency figures; a plot that cannot be made is a warning only.
Standard library only outside `draw()`, so run.py can import it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "results.json"
PUBLISHED = BENCH / "latency.png"
VENV = Path("/tmp/jinad-bench-plot-venv")
READY = VENV / ".matplotlib-installed"  # written once pip has finished
LATENCY_KEY = re.compile(r"^logs\.latency(?:\.(\d+)_subscribers)?\.(p50|p99)_ms$")
PEER_KEY = re.compile(r"^peers\.supervisord\.logtail_(p50|p99)_ms$")


def venv_python() -> Path:
    """The plot venv's interpreter, with matplotlib installed in it first if need be."""
    python = VENV / "bin" / "python"
    if not READY.exists():
        print(f"  plot: installing matplotlib into {VENV}", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=120)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "matplotlib"],
                       check=True, timeout=600)
        READY.touch()
    return python


def render(results: Path = RESULTS, png: Path | None = None, publish: bool = False, timeout: float = 120.0) -> bool:
    """Run this script in the plot venv (made on demand). Never raises: False, with a warning
    printed, when no plot could be made."""
    png = png or results.parent / "latency.png"
    try:
        argv = [venv_python(), __file__, "--results", results, "--png", png] + (["--publish"] if publish else [])
        subprocess.run(list(map(str, argv)), check=True, timeout=timeout)
        return True
    except Exception as exc:  # noqa: BLE001  (a missing plot must not fail a benchmark run)
        print(f"  warning: no latency plot ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
        return False


def series(report: dict) -> tuple[dict[str, list[tuple[int, float, float, float]]], dict, tuple[float, int] | None]:
    """jinad's points {"p50"/"p99": [(subscribers, median, fastest run, slowest run)]}, supervisord's
    {"subscribers": n, "p50"/"p99": value} and the p99 target (limit, at how many subscribers)."""
    jinad: dict[str, list[tuple[int, float, float, float]]] = {"p50": [], "p99": []}
    peer: dict[str, float] = {}
    peer_subs = 10
    target = None
    headline = 20 if report.get("quick") else 100  # results written before figures had params
    for fig in report.get("figures", []):
        runs = [r for r in fig.get("runs", []) if r is not None]
        if fig.get("value") is None or not runs:
            continue
        if match := LATENCY_KEY.match(fig["key"]):
            subs = (fig.get("params") or {}).get("subscribers") or int(match[1] or headline)
            jinad[match[2]].append((subs, fig["value"], min(runs), max(runs)))
            if fig.get("target") and match[2] == "p99":
                target = (fig["target"][2], subs)
        elif match := PEER_KEY.match(fig["key"]):
            peer[match[1]] = fig["value"]
            peer_subs = (fig.get("params") or {}).get("subscribers", peer_subs)
    for points in jinad.values():
        points.sort()
    return jinad, {"subscribers": peer_subs, **peer}, target


def draw(report: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator, ScalarFormatter

    jinad, peer, target = series(report)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    styles = {"p50": dict(color="tab:blue", marker="o"), "p99": dict(color="tab:red", marker="s")}
    counts = sorted({p[0] for points in jinad.values() for p in points})
    for name, points in jinad.items():
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(xs, ys, yerr=err, capsize=4, linewidth=1.5, markersize=7, label=f"jinad {name}", **styles[name])
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.2f}" if y < 10 else f"{y:.0f}", (x, y), textcoords="offset points", xytext=(8, -4),
                        fontsize=8, color=styles[name]["color"])
    for name in ("p50", "p99"):
        if name in peer:
            ax.plot([peer["subscribers"]], [peer[name]], linestyle="none", marker="D" if name == "p50" else "X",
                    markersize=9, markerfacecolor="none", markeredgewidth=1.5, color="dimgray",
                    label=f"supervisord logtail {name} ({peer['subscribers']} followers)")
            ax.annotate(f"{peer[name]:.0f}", (peer["subscribers"], peer[name]), textcoords="offset points",
                        xytext=(8, -4), fontsize=8, color="dimgray")
            counts = sorted(set(counts) | {peer["subscribers"]})
    if target:
        limit, at = target
        ax.axhline(limit, color="tab:red", linestyle=":", linewidth=1)
        ax.annotate(f"target: p99 ≤ {limit:g} ms at {at} subscribers", (1, limit), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(-4, 4), ha="right", fontsize=8, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if counts:
        ax.set_xlim(counts[0] / 1.6, counts[-1] * 1.6)
        ax.xaxis.set_major_locator(FixedLocator(counts))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_xlabel("SSE subscribers following one log")
    ax.set_ylabel("write → receipt latency (ms, log scale)")
    mode = "quick" if report.get("quick") else "full"
    machine = report.get("machine", {})
    ax.set_title("jinad: log latency against subscribers (ticker Pea, 1,000 lines/s)", fontsize=11)
    fig.text(0.5, 0.005, f"{mode} run, {report.get('when', '?')}; median of {report.get('runs_per_figure', '?')} run(s), "
             f"whiskers: fastest to slowest run; {machine.get('cpus', '?')} CPUs shared by daemon, child and clients; "
             f"jinad sources {report.get('jinad_sources_sha256', '?')}", ha="center", va="bottom", fontsize=7, color="dimgray",
             wrap=True)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="y", alpha=0.1)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: not labels[i].startswith("jinad"))  # jinad first
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="upper left")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="a run.py results.json")
    parser.add_argument("--png", type=Path, help="where to write the plot (default: latency.png beside --results)")
    parser.add_argument("--publish", action="store_true", help=f"also copy the plot to {PUBLISHED.relative_to(BENCH.parent.parent)}")
    args = parser.parse_args()
    png = args.png or args.results.parent / "latency.png"
    if Path(sys.prefix).resolve() != VENV.resolve():  # not in the plot venv: run there
        return 0 if render(args.results, png, args.publish) else 1
    report = json.loads(args.results.read_text())
    jinad, _, _ = series(report)
    if not any(jinad.values()):
        print(f"  plot: no logs.latency figures in {args.results}, no plot")
        return 0
    draw(report, png)
    print(f"  plot: {png}")
    if args.publish:
        shutil.copyfile(png, PUBLISHED)
        print(f"  plot: copied to {PUBLISHED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
