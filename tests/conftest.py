"""Fixtures: real `jinad` daemons in subprocesses, and a check that no test leaves a child behind."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from jinad.supervision import find_marked

REPO = Path(__file__).resolve().parent.parent
EXECUTORS = Path(__file__).resolve().parent / "executors"
JINAD = Path(sys.executable).parent / "jinad"
# JINAD_TEST_PORT_BLOCK shifts the first block, so two test runs on one machine use different ports.
_port_blocks = itertools.count(int(os.environ.get("JINAD_TEST_PORT_BLOCK", "0")))


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items) -> None:
    """Every test under tests/e2e is `e2e`: they start real daemons; the rest runs in seconds."""
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of_home(home: Path) -> list[psutil.Process]:
    """Processes a daemon with this home started, found by the daemon's own marker scan (the
    tests' leak check and the benchmarks' clean-up both use this)."""
    return [proc for procs in find_marked(str(home)).values() for proc in procs if proc.pid != os.getpid()]


async def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Await a condition (sync or async callable) with a deadline; return its truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Daemon:
    """A real `jinad` process on loopback, with its own home and port range. With `env`, it is
    started as a user would, plain `jinad` with settings in that environment (JINAD_*) instead
    of flags, and its home left to its default (~/.jinad, so `env` sets HOME to home's parent).
    The benchmarks' daemons (scripts/bench/common.py) are these too, with the class attributes
    and `answers` of their own."""

    settings = {"stop-grace-s": "5", "resource-interval-s": "0.5"}  # beside host, port and port range
    cwd = REPO  # where it runs, so configs/jinad.yml is (or is not) read
    own_session = False  # True: the leader of a process group of its own

    def __init__(self, home: Path, *extra: str, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> None:
        self.home = home
        self.host = host
        self.env = env
        self.port = free_port()
        # A block per daemon, reused only after 60 daemons, when old ports are long closed;
        # all below the kernel's ephemeral range (32768-60999), as the daemon's default.
        block = 20000 + 200 * (next(_port_blocks) % 60)
        self.port_range = f"{block}-{block + 199}"
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log_path = home.parent / f"{home.name}-daemon.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str] | None]:
        """(argv, environment) of the daemon; None: this process's environment."""
        settings = {"host": self.host, "port-expose": str(self.port), "port-range": self.port_range, **self.settings}
        if self.env is None:
            return [str(JINAD), "--workspace", str(self.home), *(f for k, v in settings.items() for f in (f"--{k}", v))], None
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}, **self.env,
               **{"JINAD_" + k.replace("-", "_").upper(): v for k, v in settings.items()}, "HOME": str(self.home.parent)}
        return [str(JINAD)], env

    def start(self, timeout: float = 60) -> "Daemon":
        argv, env = self.command()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([*argv, *self.extra], cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=self.own_session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jinad exited with {self.proc.returncode}:\n{self.log_text()}")
            if self.answers():
                return self
            time.sleep(0.05)
        raise AssertionError(f"jinad did not listen within {timeout}s:\n{self.log_text()}")

    def answers(self) -> bool:
        """Does it serve yet (it listens)?"""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode if self.proc else 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def daemon_factory(tmp_path):
    """Start daemons with `daemon_factory()`; at the end all are stopped and none may leave a child."""
    started: list[Daemon] = []

    def make(*extra: str, home: Path | None = None, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(home or tmp_path / f"home{len(started)}", *extra, host=host, env=env).start()
        started.append(daemon)
        return daemon

    yield make
    leaks = []
    for daemon in started:
        daemon.stop()
        left = children_of_home(daemon.home)
        leaks += [f"{p.pid} {' '.join(p.cmdline())}" for p in left]
        for proc in left:  # ours: started by this test's daemon
            proc.kill()
    assert not leaks, f"processes left running: {leaks}"


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        yield session


def form(*files: tuple[str, str, bytes | Path], **fields: str) -> aiohttp.FormData:
    """A multipart body of (field, filename, content) parts and plain fields."""
    data = aiohttp.FormData()
    for field_name, filename, content in files:
        body = content.read_bytes() if isinstance(content, Path) else content
        data.add_field(field_name, body, filename=filename, content_type="application/octet-stream")
    for name, value in fields.items():
        data.add_field(name, value)
    return data
