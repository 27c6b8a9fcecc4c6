"""The Docker image: built by scripts/docker-image.sh exactly from the Dockerfile (with an
offline stand-in for its base where no registry serves it) and run as README says, with the
host's network, the home volume and a port on loopback.

Needs a Docker engine: one that answers, or root to start one (the script starts a private
dockerd and installs Debian's docker.io and debootstrap when missing). Elsewhere it skips with
the reason; under CI it must run. It leaves the machine as it found it: its containers,
volumes and images are removed, and a dockerd the script started is stopped (with the firewall
settings it recorded put back)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import EXECUTORS, REPO, _port_blocks, form, free_port, wait_until
from tests.e2e.helpers import ask_http, read_stream

SCRIPT = REPO / "scripts" / "docker-image.sh"
HOME = "/home/jinad/.jinad"  # the image's home volume (Dockerfile, VOLUME)
OFFLINE_LABEL = "org.jinad.offline-base"
DOCKER_STOP_S = 10  # docker stop's default grace
pytestmark = pytest.mark.timeout(600)  # the build (with a debootstrap) is part of the first test


def _engine_or_skip_reason() -> str | None:
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    if os.geteuid() != 0:
        return "Docker cannot run here: no engine answers and only root can start one"
    return None


class Docker:
    """The docker CLI against one engine, remembering what it made so that all of it is removed."""

    def __init__(self, host: str) -> None:
        self.env = {**os.environ, "DOCKER_HOST": host}
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def __call__(self, *argv: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(["docker", *argv], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
        return done.stdout.strip()

    def volume(self) -> str:
        name = f"jinad-test-{uuid.uuid4().hex[:8]}"
        self("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(self, image: str, volume: str, *args: str, docker_args: tuple[str, ...] = ()) -> str:
        """As README says: detached, the host's network, the home volume; jinad's flags after the image."""
        container = self("run", "-d", "--network", "host", "-v", f"{volume}:{HOME}", *docker_args, image, *args)
        self.containers.append(container)
        return container

    def logs(self, container: str) -> str:
        """What jinad printed (docker logs gives the container's stdout and stderr)."""
        done = subprocess.run(["docker", "logs", container], env=self.env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def exits(self, container: str, *argv: str) -> int:
        return subprocess.run(["docker", "exec", container, *argv], env=self.env, capture_output=True, timeout=60).returncode

    def state(self, container: str) -> dict:
        return json.loads(self("inspect", "-f", "{{json .State}}", container))

    def cleanup(self) -> None:
        for container in self.containers:
            self("rm", "-f", container, check=False)
        for volume in self.volumes:
            self("volume", "rm", "-f", volume, check=False)


@pytest.fixture(scope="module")
def docker():
    reason = _engine_or_skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "JINAD_DOCKER_STATE": f"/tmp/jinad-docker-test-{os.getpid()}"}
    started = subprocess.run([str(SCRIPT), "engine"], env=env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"no Docker engine in CI:\n{started.stderr}")
        pytest.skip(f"Docker cannot run here: {started.stderr.strip().splitlines()[-1:]}")
    client = Docker(started.stdout.strip().splitlines()[-1])
    client.env["JINAD_DOCKER_STATE"] = env["JINAD_DOCKER_STATE"]
    try:
        yield client
    finally:
        client.cleanup()
        # Stops the engine only when the script started it (its pid is in that state folder).
        subprocess.run([str(SCRIPT), "stop-engine"], env=client.env, timeout=120, check=True)


@pytest.fixture(scope="module")
def image(docker, tmp_path_factory):
    """The image, built by the script from the Dockerfile; removed at the end (its base too, when
    this build made the offline stand-in on an engine that outlives the test)."""
    tag = f"jinad-test-{uuid.uuid4().hex[:8]}"
    base = re.search(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    had_base = docker("image", "inspect", base, check=False, timeout=30) != ""
    log = tmp_path_factory.mktemp("docker") / "build.log"
    started = time.monotonic()
    built = subprocess.run([str(SCRIPT), "build", tag], env={**docker.env, "BUILD_LOG": str(log)},
                           capture_output=True, text=True, timeout=540)
    assert built.returncode == 0, f"{built.stderr}\n--- build log:\n{log.read_text()[-4000:] if log.exists() else ''}"
    print(f"\n{built.stderr.strip()}\n(script: {time.monotonic() - started:.0f} s)")
    try:
        yield tag
    finally:
        docker.cleanup()
        docker("rmi", "-f", tag, check=False)
        if not had_base and docker("image", "inspect", "-f", f"{{{{index .Config.Labels \"{OFFLINE_LABEL}\"}}}}",
                                   base, check=False):
            docker("rmi", "-f", base, check=False)


def jinad_args() -> tuple[int, list[str]]:
    """A port and a port range of the tests' choosing, on loopback only."""
    block = 20000 + 200 * (next(_port_blocks) % 60)
    port = free_port()
    return port, ["--host", "127.0.0.1", "--port-expose", str(port), "--port-range", f"{block}-{block + 199}"]


async def answers(http, url: str) -> bool:
    try:
        async with http.get(url) as resp:
            return resp.status == 200 and await resp.json() == {}
    except OSError:
        return False


def left_behind() -> list[str]:
    """Processes on this machine that a daemon with the image's home started (its markers)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("JINAD_HOME") == HOME:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    return found


def zombies_in(docker: Docker, container: str) -> list[int]:
    init = psutil.Process(docker.state(container)["Pid"])
    return [p.pid for p in init.children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]


async def test_the_image_serves_flows_keeps_its_home_and_stops_whole(docker, image, http):
    volume = docker.volume()
    port, args = jinad_args()
    url = f"http://127.0.0.1:{port}"
    first = docker.run(image, volume, *args)
    await wait_until(lambda: answers(http, url + "/"), timeout=60, what="GET / answering {}")

    # Unprivileged by default, and the home volume is its own; PID 1 is the init, not jinad.
    assert docker("exec", first, "id", "-un") == "jinad"
    assert docker("exec", first, "stat", "-c", "%U %a", HOME) == "jinad 700"
    assert docker("exec", first, "cat", "/proc/1/comm") == "dumb-init"

    # A Flow from a multipart upload (curl -F flow=@… -F files=@…), answering on the host's network.
    body = form(("flow", "flow.yml", EXECUTORS / "flow_http.yml"), ("files", "upper.py", EXECUTORS / "upper.py"))
    async with http.post(url + "/flows", data=body) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    assert await ask_http(http, flow["ports"]["gateway"], "docker") == "DOCKER"

    # Its log streams over SSE from outside the container, live: a request's line arrives.
    # (its executor is a part of its own: the Flow's log marks its lines with it)
    stream = asyncio.create_task(read_stream(http, f"{url}/logs/{flow['id']}?tail=0", until_line="[upper/0] upper handled 1 docs"))
    await asyncio.sleep(0.5)
    assert await ask_http(http, flow["ports"]["gateway"], "live") == "LIVE"
    logs, _ = await asyncio.wait_for(stream, 30)
    assert logs and logs[-1]["line"].startswith("[upper/0] upper handled 1 docs")
    async with http.get(f"{url}/logs/{flow['id']}?tail=all") as resp:
        assert "upper executor ready" in await resp.text()

    # HEALTHCHECK: GET / by the daemon's own record, whatever port it was given.
    assert docker("exec", first, "python", "-m", "jinad.healthcheck") == f"{url}/ answered {{}}"
    await wait_until(lambda: docker.state(first).get("Health", {}).get("Status") == "healthy", timeout=60,
                     what="docker to call it healthy", interval=1)

    # docker stop: the daemon ends every child itself, within the grace, and exits 0.
    started = time.monotonic()
    docker("stop", first)
    stopped_in = time.monotonic() - started
    assert "every child ended" in docker.logs(first)
    assert docker.state(first)["ExitCode"] == 0
    assert stopped_in < DOCKER_STOP_S - 1, f"docker stop took {stopped_in:.1f} s: it had to kill"
    print(f"\ndocker stop with a Flow: {stopped_in:.2f} s")
    assert not left_behind()
    docker("rm", first)

    # A new container on the same volume: the workspace, its files and the record are there,
    # and the Flow that was running runs again.
    second = docker.run(image, volume, *args)
    await wait_until(lambda: answers(http, url + "/"), timeout=60, what="GET / from the second container")
    async with http.get(f"{url}/workspaces/{flow['workspace_id']}/files/upper.py") as resp:
        assert resp.status == 200 and await resp.read() == (EXECUTORS / "upper.py").read_bytes()

    async def flow_ready():
        async with http.get(f"{url}/flows/{flow['id']}") as resp:
            return resp.status == 200 and (await resp.json())["state"] == "ready"

    await wait_until(flow_ready, timeout=90, what="the Flow running again", interval=0.5)
    async with http.get(f"{url}/flows/{flow['id']}") as resp:
        again = await resp.json()
    assert await ask_http(http, again["ports"]["gateway"], "again") == "AGAIN"
    docker("stop", second)
    assert "every child ended" in docker.logs(second)
    assert not left_behind()


async def test_pid_1_reaps_the_grandchildren_that_children_leave(docker, image, http):
    """Deserter exits at once and leaves a grandchild in a session of its own; jinad ends that
    grandchild (by its markers), and since its parent is gone it is PID 1's to reap. With jinad
    as PID 1 (`--entrypoint jinad`) they pile up as zombies, two or more in this time (measured);
    with the image's init none stays."""
    volume = docker.volume()
    port, args = jinad_args()
    url = f"http://127.0.0.1:{port}"
    container = docker.run(image, volume, *args)
    await wait_until(lambda: answers(http, url + "/"), timeout=60, what="GET / answering {}")
    async with http.post(url + "/workspaces", data=form(("files", "unruly.py", EXECUTORS / "unruly.py"))) as resp:
        workspace = (await resp.json())["id"]
    body = {"workspace_id": workspace, "uses": "Deserter", "py_modules": ["unruly.py"], "restart": "on-failure"}
    async with http.post(url + "/peas", json=body) as resp:
        assert resp.status == 201, await resp.text()
        pea = await resp.json()

    async def restarts() -> int:
        async with http.get(f"{url}/peas/{pea['id']}") as resp:
            return (await resp.json())["restarts"]

    await wait_until(lambda: _at_least(restarts, 2), timeout=60, what="two restarts of the Deserter", interval=0.5)
    async with http.get(f"{url}/logs/{pea['id']}?tail=all") as resp:
        grandchildren = [int(pid) for pid in re.findall(r"deserter grandchild (\d+)", await resp.text())]
    assert len(grandchildren) >= 2
    await wait_until(lambda: not zombies_in(docker, container), timeout=10, what="no zombie in the container")
    for pid in grandchildren[:-1]:  # the last run's may still be alive; the earlier ones were ended
        assert docker.exits(container, "test", "-e", f"/proc/{pid}") != 0, f"grandchild {pid} is still there (unreaped?)"
    docker("stop", container)
    assert docker.state(container)["ExitCode"] == 0


async def _at_least(read, n: int) -> bool:
    return await read() >= n


def test_the_readme_says_how_to_run_and_build_it():
    readme = (REPO / "README.md").read_text()
    assert f"docker run -d --network host -v jinad-home:{HOME}" in readme
    assert "scripts/docker-image.sh" in readme
    assert Path(SCRIPT).stat().st_mode & 0o111
