"""Flood: write `lines` lines of exactly 100 bytes to stdout as fast as possible.

The same loop runs two ways, so the two timings compare like with like:
- as a Jina Executor (`Flood`) run by jinad: the loop runs in a thread once the Executor is
  built and a go-file exists (so SSE subscribers can connect first);
- as a plain script, the baseline: `python flood.py LINES | cat > /dev/null`;
- as the same Executor under `jina executor ... | cat > /dev/null`: how much of the gap is
  Jina's own runtime (its threads compete with the writing thread for the GIL), not jinad.
Each line is `FL<9 digits> ` + padding + newline; at the end the loop writes
`flood done <lines> <seconds> <epoch of the first write>`: the writer's own wall time.
"""

import os
import sys
import threading
import time

LINE_BYTES = 100
PREFIX = "FL"


def flood(lines: int) -> float:
    """Write the lines; return the loop's wall time in seconds."""
    pad = "x" * (LINE_BYTES - len(PREFIX) - 9 - 2)
    out = sys.stdout
    began_epoch = time.time()
    began = time.perf_counter()
    for i in range(lines):
        out.write(f"{PREFIX}{i:09d} {pad}\n")
    out.flush()
    elapsed = time.perf_counter() - began
    out.write(f"flood done {lines} {elapsed:.6f} {began_epoch:.6f}\n")
    out.flush()
    return elapsed


if __name__ == "__main__":  # the baseline: the same loop as a plain script; timing also on stderr
    print(f"{flood(int(sys.argv[1])):.6f}", file=sys.stderr)
    sys.exit(0)

from jina import Executor, requests  # noqa: E402  (only when Jina loads this file as an Executor)


class Flood(Executor):
    """`report_file`: also write the wall time there (for a run whose stdout goes to cat)."""

    def __init__(self, lines: int = 1000, go_file: str = "", go_timeout_s: float = 600.0, report_file: str = "", **kwargs):
        super().__init__(**kwargs)
        threading.Thread(target=self._run, args=(lines, go_file, go_timeout_s, report_file), daemon=True).start()

    @staticmethod
    def _run(lines: int, go_file: str, go_timeout_s: float, report_file: str) -> None:
        deadline = time.monotonic() + go_timeout_s
        while go_file and not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = flood(lines)
        if report_file:
            with open(report_file + ".partial", "w") as f:
                f.write(f"{elapsed:.6f}\n")
            os.replace(report_file + ".partial", report_file)

    @requests
    def noop(self, **kwargs):
        return None
