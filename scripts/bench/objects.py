"""Creating and deleting jinad objects, and running the SSE load client, for the benchmarks."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path

from common import BENCH, PYTHON, Daemon, end_group, http_json, spawn


def create(daemon: Daemon, plural: str, body: dict, timeout: float = 180.0) -> dict:
    status, obj = http_json("POST", f"{daemon.url}/{plural}", body, daemon.headers, timeout=timeout)
    if status != 201:
        raise RuntimeError(f"POST /{plural} answered {status}: {json.dumps(obj)[:2000]}")
    return obj


def delete(daemon: Daemon, plural: str, object_id: str) -> None:
    http_json("DELETE", f"{daemon.url}/{plural}/{object_id}", None, daemon.headers, timeout=120)


def log_text(daemon: Daemon, object_id: str, tail: int = 5) -> str:
    import urllib.request

    req = urllib.request.Request(f"{daemon.url}/logs/{object_id}?tail={tail}&follow=false", headers=daemon.headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode(errors="replace")


def wait_log_line(daemon: Daemon, object_id: str, prefix: str, timeout: float) -> str:
    """Poll the log's tail until a line starting with `prefix` shows; that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_text(daemon, object_id).splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.2)
    raise TimeoutError(f"no {prefix!r} line in the log of {object_id} within {timeout}s")


class SseClients:
    """`processes` separate sse_client.py processes sharing `connections` SSE streams."""

    def __init__(self, mode: str, url: str, connections: int, processes: int, token: str = "",
                 timeout: float = 600.0, samples_dir: Path | None = None, plain: bool = False) -> None:
        self.procs: list[subprocess.Popen] = []
        self.samples: list[Path] = []
        per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
        for i, n in enumerate(p for p in per if p):
            argv = [PYTHON, BENCH / "sse_client.py", mode, url, "--connections", n, "--token", token, "--timeout", timeout]
            if samples_dir is not None:
                self.samples.append(samples_dir / f"samples-{i}.bin")
                argv += ["--samples", self.samples[-1]]
            if plain:
                argv.append("--plain")
            self.procs.append(spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        self.lines = [_reader(proc) for proc in self.procs]

    def wait_ready(self, timeout: float = 120.0) -> None:
        for lines in self.lines:
            line = _readline(lines, timeout)
            if not line.startswith("ready"):
                raise RuntimeError(f"SSE client did not connect: {line!r}")

    def results(self, timeout: float) -> list[dict]:
        """Per-connection results of every client process."""
        out = []
        deadline = time.monotonic() + timeout
        for lines in self.lines:
            line = _readline(lines, max(1.0, deadline - time.monotonic()))
            out += json.loads(line)["connections"]
        return out

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            end_group(proc, grace=5)

    def __enter__(self) -> "SseClients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reader(proc: subprocess.Popen) -> queue.Queue:
    """A queue fed with the process's stdout lines by a thread ('' at the end)."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _readline(lines: queue.Queue, timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"an SSE client said nothing within {timeout}s") from None
