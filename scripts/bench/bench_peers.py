"""6. Peers, each in its own venv under /tmp (never in jinad's): supervisord (pip `supervisor`)
and Ray's job API (pip `ray[default]`).

supervisord runs the same ticker as a plain script (1,000 timestamped lines/s) with its stdout
in a log file; subscribers follow it over supervisord's HTTP `GET /logtail/<program>`, and
the latency is write → receipt as for jinad. Its idle RSS is taken with the program started
but not yet writing (as jinad's idle figure has no object at all, compare with care).

Ray: a fresh head node per run (`ray start --head --block`, loopback only, every port fixed from
the private range, usage stats off, a temporary --temp-dir), idle RSS of all its processes once
its job API takes submissions; then over the REST job API: submit → RUNNING and → first log
line of the ticker as a plain script, the same Executor as a jinad Pea (`jina executor`, upper.py)
until its port answers against jinad's `POST /peas` → 201, and write → receipt latency of 10
followers of the websocket `GET /api/jobs/<id>/logs/tail`. Never `ray stop` (it ends every Ray
of the user): the head's processes are found by its session, a marker in their environment and
as its descendants, and ended by pid. Skipped under --quick.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil

from bench_logs import percentile
from common import (EXECUTORS, JINA, PORTS, PYTHON, TESTS_EXECUTORS, Daemon, child_env, end_group, file_tail, is_free, kill_all,
                    connects, http_json, median, settle_rss, spawn, tmp_root, upload_workspace, wait_until)
from objects import SseClients, create, delete
from results import Figure
from sse_client import PLAIN_TICK, PLAIN_TICK_DONE

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
    figures = supervisord(quick, runs)
    if quick:
        print("  ray: skipped under --quick (installs ray[default], starts a whole cluster)")
        return figures
    return figures + ray(runs)


def supervisord(quick: bool, runs: int) -> list[Figure]:
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
        Figure("peers.supervisord.logtail_p50_ms", f"peer: supervisord log latency p50 ({setup})", "ms", p50s,
               params={"subscribers": SUBSCRIBERS}),
        Figure("peers.supervisord.logtail_p99_ms", f"peer: supervisord log latency p99 ({setup})", "ms", p99s,
               note="; ".join(notes), params={"subscribers": SUBSCRIBERS}),
    ]


# --- Ray's job API -------------------------------------------------------------------------

RAY_VENV = Path("/tmp/jinad-bench-ray-venv")
RAY_MARK = "JINAD_BENCH_RAY"  # in the environment of every process of our head node
UPPER = TESTS_EXECUTORS / "upper.py"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
FOLLOWERS = 10


def ray_cli() -> Path:
    ray = RAY_VENV / "bin" / "ray"
    if not ray.exists():
        subprocess.run([sys.executable, "-m", "venv", RAY_VENV], check=True, timeout=120)
        subprocess.run([RAY_VENV / "bin" / "python", "-m", "pip", "install", "-q", "ray[default]"], check=True, timeout=900)
    return ray


@contextlib.contextmanager
def short_root() -> Iterator[Path]:
    """A temporary dir for Ray's --temp-dir: Ray puts unix sockets under
    <dir>/session_<date>_<pid>/sockets/ (~62 more characters; the limit is 107)."""
    with tmp_root("ray") as root:
        if len(str(root)) <= 40:
            yield root
            return
        short = Path(tempfile.mkdtemp(prefix="jbr-", dir="/tmp"))
        try:
            yield short
        finally:
            shutil.rmtree(short, ignore_errors=True)


class RayHead:
    """A Ray head node of our own: `ray start --head --block` as the leader of a new session,
    loopback only, every port it opens fixed to the private range."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dashboard = PORTS.api()
        block = PORTS.block()
        free = [p for p in block[:40] if is_free(p)]
        if len(free) < 11:
            raise RuntimeError(f"fewer than 11 free ports in {block.start}-{block.start + 39}")
        (self.gcs, self.agent_http, self.agent_grpc, self.metrics, self.runtime_env, self.node_manager,
         self.object_manager, self.client_server, self.autoscaler_metrics, self.dashboard_metrics, self.executor) = free[:11]
        self.workers = range(block.start + 40, block.stop)  # one port per worker process
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "ray-start.log"
        self.url = f"http://127.0.0.1:{self.dashboard}"
        self.left: list[str] = []

    def start(self, timeout: float = 120.0) -> "RayHead":
        env = child_env(
            RAY_USAGE_STATS_ENABLED="0",
            # Ray's switch for a loopback node IP; otherwise it resolves 127.0.0.1 to the host's address
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # SIGTERM ends it at once, not after a 30 s drain
            AUTOSCALER_METRIC_PORT=str(self.autoscaler_metrics),  # else 44217, 44227
            DASHBOARD_METRIC_PORT=str(self.dashboard_metrics),
            **{RAY_MARK: str(self.root)},
        )
        argv = [ray_cli(), "start", "--head", "--block", "--disable-usage-stats", "--temp-dir", self.root,
                "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
                "--port", self.gcs, "--dashboard-port", self.dashboard,
                "--dashboard-agent-listen-port", self.agent_http, "--dashboard-agent-grpc-port", self.agent_grpc,
                "--metrics-export-port", self.metrics, "--runtime-env-agent-port", self.runtime_env,
                "--node-manager-port", self.node_manager, "--object-manager-port", self.object_manager,
                "--ray-client-server-port", self.client_server,
                "--min-worker-port", self.workers.start, "--max-worker-port", self.workers.stop - 1,
                "--num-cpus", os.cpu_count() or 2, "--object-store-memory", 100 * 1024 * 1024]
        with open(self.log_path, "ab") as out:
            self.proc = spawn(argv, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for what, ready in (("the dashboard", lambda: self.get("/api/version")[0] == 200),
                            ("the job API", lambda: self.get("/api/jobs/")[0] == 200),
                            ("the dashboard agent", lambda: connects(self.agent_http))):
            while not ready():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ray start exited with {self.proc.returncode}: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Ray's head: no {what} within {timeout}s: {self.log_tail()}")
                time.sleep(0.05)
        return self

    def get(self, path: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return None, b""

    def post(self, path: str, body: dict | None = None, timeout: float = 60.0) -> dict:
        status, answer = http_json("POST", self.url + path, body or {}, timeout=timeout)
        if status >= 400:
            raise RuntimeError(f"Ray's POST {path} answered {status}: {answer}")
        return answer

    def submit(self, argv: list) -> str:
        return self.post("/api/jobs/", {"entrypoint": shlex.join(map(str, argv))})["submission_id"]

    def status(self, job: str) -> str:
        code, body = self.get(f"/api/jobs/{job}")
        return json.loads(body)["status"] if code == 200 else f"HTTP {code}"

    def logs(self, job: str) -> str:
        code, body = self.get(f"/api/jobs/{job}/logs")
        return json.loads(body)["logs"] if code == 200 else ""

    def wait_running(self, job: str, timeout: float = 120.0) -> str:
        """Polls the job's status every 10 ms until it is past PENDING; that status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job)
            if status == "RUNNING" or status in TERMINAL:
                if status in ("FAILED", "STOPPED"):
                    raise RuntimeError(f"Ray job {job} {status}: {self.logs(job)[-2000:]}")
                return status
            time.sleep(0.01)
        raise TimeoutError(f"Ray job {job} not RUNNING within {timeout}s")

    def stop_job(self, job: str, timeout: float = 30.0) -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            self.post(f"/api/jobs/{job}/stop", timeout=timeout)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self.status(job) in TERMINAL, timeout, f"Ray job {job} to stop", interval=0.1)

    def processes(self) -> list[psutil.Process]:
        """Every process of this head: in the leader's session (its own processes), marked in
        the environment (workers and jobs run in sessions of their own), or a descendant of
        either (a process that rewrites its title can blank its /proc environ)."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid():
                    continue
                if os.getsid(proc.pid) == self.proc.pid or proc.environ().get(RAY_MARK) == str(self.root):
                    found[proc.pid] = proc
            except (psutil.Error, OSError):
                continue
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        return list(found.values())

    def memory(self) -> tuple[int, int, int]:
        """(RSS summed over its processes, PSS summed, how many)."""
        rss = pss = count = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rss, pss, count = rss + info.rss, pss + info.pss, count + 1
        return rss, pss, count

    def not_loopback(self) -> list[str]:
        """Sockets of its processes on an address other than loopback, or listening outside our ports."""
        ours = {self.dashboard, self.gcs, self.agent_http, self.agent_grpc, self.metrics, self.runtime_env, self.node_manager,
                self.object_manager, self.client_server, self.autoscaler_metrics, self.dashboard_metrics, self.executor,
                *self.workers}
        bad = []
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                for conn in proc.net_connections(kind="inet"):
                    for addr in (conn.laddr, conn.raddr):
                        if addr and addr.ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
                            bad.append(f"{proc.name()} {addr.ip}:{addr.port}")
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port not in ours:
                        bad.append(f"{proc.name()} listens on {conn.laddr.port}")
        return bad

    def check_sockets(self) -> None:
        bad = self.not_loopback()
        if bad:
            raise RuntimeError(f"Ray opened sockets off loopback or outside its ports: {sorted(set(bad))}")

    def stop(self) -> None:
        """SIGTERM its group (`ray start` then ends what it started), wait, SIGKILL; then end by
        pid whatever of it is left, including workers in sessions of their own."""
        if self.proc is None:
            return
        seen = {p.pid: p for p in self.processes()} if self.proc.poll() is None else {}
        end_group(self.proc, grace=30.0)
        left: list[psutil.Process] = []
        for _ in range(3):
            found = {**seen, **{p.pid: p for p in self.processes()}}
            left = []
            for proc in found.values():
                with contextlib.suppress(psutil.Error):
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:  # is_running: the same process
                        left.append(proc)
            if not left:
                break
            kill_all(left)
        if left:
            self.left = [f"{p.pid}" for p in left]
            print(f"  [cleanup] Ray: {len(left)} process(es) would not end: {self.left}", file=sys.stderr)

    def log_tail(self, n: int = 20) -> str:
        return file_tail(self.log_path, n)

    def __enter__(self) -> "RayHead":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


async def follow_ray_logs(head: RayHead, job: str, go: Path, followers: int, timeout: float) -> tuple[array.array, list[dict]]:
    """`followers` websockets on Ray's `/api/jobs/<job>/logs/tail`; once each has had its first
    message (the job's own "Running entrypoint" line: the tail is up), the go-file starts the
    ticker. Write → receipt latency of every tick line, as for jinad."""
    import aiohttp

    samples = array.array("d")
    states = [{"lines": 0, "gaps": 0, "done": False} for _ in range(followers)]
    url = f"ws://127.0.0.1:{head.dashboard}/api/jobs/{job}/logs/tail"

    async def one(ws: aiohttp.ClientWebSocketResponse, state: dict, first: asyncio.Event) -> None:
        carry = ""
        async for msg in ws:
            received = time.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            first.set()
            data = carry + msg.data
            end = data.rfind("\n") + 1
            complete, carry = data[:end], data[end:]
            for match in PLAIN_TICK.finditer(complete.encode()):
                if int(match[1]) != state["lines"]:
                    state["gaps"] += 1
                state["lines"] = int(match[1]) + 1
                samples.append(received - float(match[2]))
            if PLAIN_TICK_DONE.decode() in complete:
                state["done"] = True
                return
        state["eof"] = True

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(followers)]
        firsts = [asyncio.Event() for _ in sockets]
        tasks = [asyncio.ensure_future(one(ws, st, ev)) for ws, st, ev in zip(sockets, states, firsts)]
        try:
            await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in firsts)), 60)
            go.touch()
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task, state in zip(tasks, states):
                if task in pending:
                    state["timeout"] = True
        finally:
            for task in tasks:
                task.cancel()
            for ws in sockets:
                await ws.close()
    return samples, states


def ray(runs: int) -> list[Figure]:
    ray_cli()
    seconds, rate = 20, 1000
    idle, pss, counts, to_running, to_log, posted = [], [], [], [], [], []
    ray_ready, jinad_ready, p50s, p99s, tail_notes = [], [], [], [], []
    with tmp_root("peers-ray-jinad") as jroot, Daemon(jroot, "ray-jinad") as daemon:
        workspace = upload_workspace(daemon, [UPPER])
        pea = {"workspace_id": workspace, "uses": "Upper", "py_modules": [UPPER.name]}

        def jinad_pea() -> float:
            began = time.perf_counter()
            obj = create(daemon, "peas", pea)
            elapsed = time.perf_counter() - began
            delete(daemon, "peas", obj["id"])
            return elapsed

        print(f"  warm-up jinad pea: {jinad_pea():.2f} s (not counted)")
        for i in range(runs):
            jinad_ready.append(jinad_pea())  # before Ray starts: each measured with the other one down
            with short_root() as root, RayHead(root) as head:
                time.sleep(2)  # as jinad's idle figure: 2 s after it answers
                samples_rss = []
                for _ in range(5):
                    samples_rss.append(head.memory())
                    time.sleep(0.2)
                rss, pss_now, count = sorted(samples_rss)[len(samples_rss) // 2]
                idle.append(rss)
                pss.append(pss_now)
                counts.append(count)
                head.check_sockets()

                # 1. a plain script: submit → RUNNING, → its first line in GET /logs
                began = time.perf_counter()
                job = head.submit([PYTHON, EXECUTORS / "ticker.py", 10, 2])
                posted.append(time.perf_counter() - began)
                head.wait_running(job)
                to_running.append(time.perf_counter() - began)
                wait_until(lambda: "TK 0 " in head.logs(job), 60, "the ticker's first line in Ray's job log", interval=0.01)
                to_log.append(time.perf_counter() - began)
                head.stop_job(job)

                # 2. the same Executor as jinad's Pea, until its port answers
                began = time.perf_counter()
                job = head.submit([JINA, "executor", "--uses", "Upper", "--py-modules", UPPER, "--port", head.executor,
                                   "--protocol", "grpc"])
                deadline = began + 120
                while not connects(head.executor):
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"Ray's jina executor job did not answer within 120 s: {head.logs(job)[-2000:]}")
                    time.sleep(0.01)
                ray_ready.append(time.perf_counter() - began)
                if head.status(job) != "RUNNING":
                    raise RuntimeError(f"Ray's jina executor job is {head.status(job)}: {head.logs(job)[-2000:]}")
                head.stop_job(job)

                # 3. log-follow latency over the websocket tail
                go = root / "go"
                job = head.submit([PYTHON, EXECUTORS / "ticker.py", rate, seconds, go])
                head.wait_running(job)
                samples, states = asyncio.run(follow_ray_logs(head, job, go, FOLLOWERS, seconds + 60))
                head.check_sockets()
                head.stop_job(job)
            values = sorted(samples)
            if not values:
                raise RuntimeError(f"no tick line reached a Ray log follower: {states}")
            p50s.append(percentile(values, 0.5) * 1e3)
            p99s.append(percentile(values, 0.99) * 1e3)
            done = sum(1 for st in states if st.get("done"))
            tail_notes.append(f"{len(values)}/{rate * seconds * FOLLOWERS} lines, {done}/{FOLLOWERS} followers to the end")
            if head.left:
                raise RuntimeError(f"Ray processes left after run {i}: {head.left}")
            print(f"  ray run {i}: idle {rss / 1e6:.0f} MB RSS ({pss_now / 1e6:.0f} MB PSS, {count} processes), "
                  f"submit → RUNNING {to_running[-1] * 1e3:.0f} ms (POST {posted[-1] * 1e3:.0f} ms), "
                  f"→ first log line {to_log[-1] * 1e3:.0f} ms; executor: ray {ray_ready[-1]:.2f} s, jinad {jinad_ready[-1]:.2f} s; "
                  f"log tail p50 {p50s[-1]:.0f} ms, p99 {p99s[-1]:.0f} ms, {tail_notes[-1]}")
    version = subprocess.run([RAY_VENV / "bin" / "python", "-c", "import ray; print(ray.__version__)"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    setup = f"{rate:,} lines/s, {FOLLOWERS} websocket followers of /api/jobs/<id>/logs/tail"
    return [
        Figure("peers.ray.idle_rss_mb", f"peer: Ray {version} head node, RSS of all its processes, idle (job API up, no job)",
               "MB", [v / 1e6 for v in idle],
               note=f"PSS {median(pss) / 1e6:.0f} MB; {median(counts):.0f} processes; object store 100 MB, dashboard on"),
        Figure("peers.ray.submit_to_running_ms",
               "peer: Ray job API, POST /api/jobs/ (ticker.py as a plain script) → status RUNNING (polled every 10 ms)",
               "ms", [v * 1e3 for v in to_running], note=f"the POST itself: {median(posted) * 1e3:.0f} ms"),
        Figure("peers.ray.submit_to_first_log_ms", "peer: Ray job API, POST /api/jobs/ → the job's first line in GET /api/jobs/<id>/logs",
               "ms", [v * 1e3 for v in to_log]),
        Figure("peers.ray.executor_deploy_s",
               "deploy: one Executor (tests/executors/upper.py), jinad POST /peas → 201, against Ray",
               "s", jinad_ready, "Ray job `jina executor` POST → its port answers", ray_ready,
               note="ratio = jinad / Ray; each jinad run happens while no Ray is up"),
        Figure("peers.ray.logtail_p50_ms", f"peer: Ray job log latency p50 ({setup})", "ms", p50s),
        Figure("peers.ray.logtail_p99_ms", f"peer: Ray job log latency p99 ({setup})", "ms", p99s, note="; ".join(tail_notes)),
    ]
