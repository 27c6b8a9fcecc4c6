"""Shared pieces of the benchmarks: private ports, real `jinad` daemons in temporary homes,
RSS sampling, process clean-up and small statistics.

Every process a benchmark starts is started in its own process group and ended by that id
(SIGTERM, wait, SIGKILL) in a `finally`; children a daemon left are found by the
JINAD_HOME marker jinad puts in their environment (the scan the tests use), and ended too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent.parent
sys.path.insert(0, str(REPO))  # the tests' harness, shared with them

from jinad.ports import is_free  # noqa: E402, F401  (re-exported: the daemon's own bind check)
from tests.conftest import Daemon as HarnessDaemon, children_of_home  # noqa: E402
EXECUTORS = BENCH / "executors"
TESTS_EXECUTORS = REPO / "tests" / "executors"
VENV_BIN = Path(sys.executable).parent
JINA = VENV_BIN / "jina"
PYTHON = sys.executable

# Every port a benchmark uses comes from here: API ports from the first block, the ranges
# that daemons (and direct `jina` runs) hand to their children from the rest.
# Below the kernel's ephemeral range (32768-60999), so no outgoing connection takes one.
API_PORTS = range(32000, 32100)
CHILD_BLOCKS = [range(start, start + 100) for start in range(32100, 32700, 100)]


def file_tail(path: Path, n: int = 20) -> str:
    """The last n lines of a (log) file, or "" when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Ports:
    """Hands out API ports and child port blocks of the private range, round-robin."""

    def __init__(self) -> None:
        self._api = 0
        self._block = 0

    def api(self) -> int:
        for _ in range(len(API_PORTS)):
            port = API_PORTS[self._api % len(API_PORTS)]
            self._api += 1
            if is_free(port):
                return port
        raise RuntimeError(f"no free port in {API_PORTS.start}-{API_PORTS.stop - 1}")

    def block(self) -> range:
        block = CHILD_BLOCKS[self._block % len(CHILD_BLOCKS)]
        self._block += 1
        return block


PORTS = Ports()
PROFILE_DIR: Path | None = None  # set by run.py --profile: py-spy records every daemon
PY_SPY = VENV_BIN / "py-spy"
HANG_DIR = BENCH / "results" / "hangs"  # stacks of daemons that did not stop in time
STOP_GRACE_S = 60.0
CLASH_SIGNS = ("address already in use", "Failed to bind to address")  # uvicorn's, gRPC's words for a taken port


def child_env(**extra: str) -> dict[str, str]:
    """The environment jinad gives its children (unbuffered, no colour), for direct runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}
    env.update(PYTHONUNBUFFERED="1", JINA_LOG_NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def end_group(proc: subprocess.Popen | None, grace: float = 10.0) -> bool:
    """SIGTERM the process group led by `proc`, wait, SIGKILL it; never raises. True when the
    leader ended within the grace period."""
    if proc is None:
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
        in_time = True
    except subprocess.TimeoutExpired:
        in_time = False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return in_time


def spawn(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start a process as the leader of its own group (so `end_group` takes all of it)."""
    return subprocess.Popen(list(map(str, argv)), start_new_session=True, **kwargs)


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, 5)


class Daemon(HarnessDaemon):
    """A real `jinad` (the tests' harness) on loopback with a temporary home, a private API port
    and child range, in a process group of its own, logging warnings only."""

    settings = {"stop-grace-s": "5"}  # the default resource interval, as a user's daemon samples
    own_session = True  # stopped with its group by `end_group`

    def __init__(self, root: Path, name: str, *extra: str, token: str = "", port_range: range | None = None) -> None:
        super().__init__(root / f"{name}-home", "--log-level", "WARNING", *extra, *(["--token", token] if token else []))
        self.root = root
        self.cwd = root  # a folder without configs/jinad.yml, so only these flags and the defaults count
        self.log_path = root / f"{name}-daemon.log"
        self.port = PORTS.api()
        self.block = port_range or PORTS.block()
        self.port_range = f"{self.block.start}-{self.block.stop - 1}"
        self.token = token
        self.profiler: subprocess.Popen | None = None
        self.exit_s: float | None = None
        self.killed = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def answers(self) -> bool:
        """Does it answer `GET /` yet?"""
        try:
            with urllib.request.urlopen(self.url + "/", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 60.0) -> "Daemon":
        super().start(timeout)
        self._profile()
        return self

    def _profile(self) -> None:
        """With --profile: py-spy samples the daemon (on-CPU only) until it exits."""
        if PROFILE_DIR is None:
            return
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        out = PROFILE_DIR / f"{self.home.name.removesuffix('-home')}-{self.pid}.txt"
        self.profiler = spawn([PY_SPY, "record", "-p", self.pid, "-r", "200", "-f", "raw", "-o", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """SIGTERM (jinad then stops every child), wait, kill; then end any child it left.
        Sets `exit_s` (SIGTERM to exit) and `killed` (it had to be SIGKILLed); a daemon that
        hangs has its stacks dumped (py-spy) and its log tail printed first."""
        began = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                self._report_hang()
        end_group(self.proc, grace=1.0)
        self.exit_s = time.monotonic() - began
        if self.profiler:  # it writes its file once the daemon is gone
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(30)
            end_group(self.profiler)
        left = children_of_home(self.home)
        if left:
            print(f"  [cleanup] ending {len(left)} process(es) left by {self.home.name}", file=sys.stderr)
            kill_all(left)

    def _report_hang(self) -> None:
        print(f"  [hang] jinad {self.pid} did not exit {STOP_GRACE_S:.0f} s after SIGTERM; "
              f"{len(children_of_home(self.home))} child process(es) still up", file=sys.stderr)
        if PY_SPY.exists():
            HANG_DIR.mkdir(parents=True, exist_ok=True)
            dump = HANG_DIR / f"{self.home.name}-{self.pid}-stacks.txt"
            with open(dump, "w") as out:
                subprocess.run([PY_SPY, "dump", "--locals", "-p", str(self.pid)], stdout=out, stderr=subprocess.STDOUT, timeout=60)
            print(f"  [hang] its stacks: {dump}", file=sys.stderr)
        print("  [hang] its log ends:\n" + self.log_tail(30), file=sys.stderr)
        states: dict[str, list[str]] = {}
        for record in (self.home / "state" / "objects").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                obj = json.loads(record.read_text())
                states.setdefault(obj["state"], []).append(f"{obj['id']} pid {obj.get('pid')}")
        print(f"  [hang] object states on disk: {states}", file=sys.stderr)
        for proc in children_of_home(self.home):
            with contextlib.suppress(psutil.Error):
                print(f"  [hang] left: {proc.pid} {proc.status()} {proc.environ().get('JINAD_OBJECT_ID')} "
                      f"{' '.join(proc.cmdline())[:100]}", file=sys.stderr)

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the daemon process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def log_tail(self, n: int = 20) -> str:
        return file_tail(self.log_path, n)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PeakRss:
    """Samples a process's RSS in a thread every `interval` s; `.peak` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def hello_world() -> Iterator[tuple[int, subprocess.Popen]]:
    """The REST and memory baseline: a bare aiohttp + uvloop hello-world (hello.py) on a private
    port, answering once before it is handed over (as a Daemon is), ended with the block."""
    port = PORTS.api()
    proc = spawn([PYTHON, BENCH / "hello.py", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: not is_free(port), 30, "the hello-world server")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            resp.read()
        yield port, proc
    finally:
        end_group(proc)


def settle_rss(pid: int, seconds: float = 1.0, samples: int = 5) -> int:
    """The median RSS over a short quiet period."""
    proc = psutil.Process(pid)
    values = []
    for _ in range(samples):
        values.append(proc.memory_info().rss)
        time.sleep(seconds / samples)
    return int(statistics.median(values))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@contextlib.contextmanager
def tmp_root(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"jinad-bench-{prefix}-") as root:
        yield Path(root)


def connects(port: int) -> bool:
    """Does something on loopback accept a TCP connection on this port?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_json(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 300.0):
    """(status, JSON body) of one request, with the standard library (no event loop needed)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={**(headers or {}), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def upload_workspace(daemon: Daemon, files: Sequence[Path]) -> str:
    """POST /workspaces with these files (curl: a client that costs next to nothing)."""
    argv = ["curl", "-sS", "--fail-with-body", "-m", "600", "-X", "POST", daemon.url + "/workspaces"]
    for key, value in daemon.headers.items():
        argv += ["-H", f"{key}: {value}"]
    for path in files:
        argv += ["-F", f"files=@{path};filename={path.name}"]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=620)
    return json.loads(out.stdout)["id"]


def mb(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / 1e6
