"""`limits` enforced with cgroups on real Peas: memory ended by the OOM killer and said so, a
CPU share measured, a fork bomb stopped; no cgroup left behind."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import psutil
import pytest

from tests.conftest import EXECUTORS, form, wait_until
from tests.e2e.helpers import UPPER, create, get, make_workspace, remote_flow, tree_pids

GREEDY = ("files", "greedy.py", EXECUTORS / "greedy.py")
CGROUP_FS = Path("/sys/fs/cgroup")


def _cgroup_dirs(home: Path) -> list[Path]:
    """This home's cgroup folders, in every v1 controller."""
    tag = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return [p for p in CGROUP_FS.glob(f"*/**/jinad/{tag}") if p.is_dir()]


def _group_of(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_FS / controller / path.lstrip("/")
    raise AssertionError(f"{pid} is in no {controller} cgroup")


@pytest.fixture
async def limited(http, daemon):
    async with http.get(daemon.url + "/status") as resp:
        available = (await resp.json())["limits"]
    if not all(available.values()):
        pytest.skip(f"this machine cannot enforce every limit: {available}")
    yield daemon
    daemon.stop()
    assert not _cgroup_dirs(daemon.home), "cgroups left behind"


async def _pea(http, daemon, uses: str, limits: dict, **extra) -> dict:
    workspace = await make_workspace(http, daemon, GREEDY)
    return await create(http, daemon, "peas", {"workspace_id": workspace, "uses": uses, "py_modules": ["greedy.py"],
                                               "limits": limits, **extra})


async def _log(http, daemon, object_id: str) -> str:
    async with http.get(f"{daemon.url}/logs/{object_id}?tail=all&follow=false") as resp:
        return await resp.text()


async def _delete(http, daemon, object_id: str) -> None:
    async with http.delete(f"{daemon.url}/peas/{object_id}") as resp:
        assert resp.status == 200, await resp.text()


async def test_memory_past_the_limit_is_ended_and_says_so(http, limited):
    daemon = limited
    pea = await _pea(http, daemon, "Hog", {"memory": "200MiB"}, uses_with={"mib": 400})
    assert pea["limits"] == {"memory": 200 * 1024 * 1024}
    assert _cgroup_dirs(daemon.home)
    ended = await wait_until(lambda: _state(http, daemon, pea["id"], "exited"), 60, "the hog to be ended")
    assert "ended by its memory limit of 209715200 bytes" in ended["error"], ended
    assert "OOM killer" in ended["error"]
    log = await _log(http, daemon, pea["id"])
    held = [int(m) for m in re.findall(r"hog holds (\d+) MiB", log)]
    assert held and max(held) < 200 and "hog holds all it asked for" not in log
    await _delete(http, daemon, pea["id"])
    assert not _cgroup_dirs(daemon.home)


async def _state(http, daemon, object_id: str, state: str) -> dict | None:
    obj = await get(http, daemon, "peas", object_id)
    return obj if obj["state"] == state else None


async def test_busy_loop_under_half_a_cpu_uses_about_half_a_core(http, limited):
    daemon = limited
    pea = await _pea(http, daemon, "Spinner", {"cpus": 0.5})

    def cpu_seconds() -> float:
        total = 0.0
        for pid in tree_pids(pea["pid"]):
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    await asyncio.sleep(1.0)
    before, start = cpu_seconds(), asyncio.get_running_loop().time()
    await asyncio.sleep(5.0)
    share = (cpu_seconds() - before) / (asyncio.get_running_loop().time() - start)
    print(f"busy loop under cpus: 0.5 used {share:.3f} of a core over 5 s")
    assert 0.4 <= share <= 0.6, share
    # The object's own resources come from the cgroup and agree.
    obj = await get(http, daemon, "peas", pea["id"])
    assert 35 <= obj["resources"]["cpu_percent"] <= 65, obj["resources"]
    assert obj["resources"]["memory_rss"] > 0 and obj["resources"]["processes"] >= 2
    await _delete(http, daemon, pea["id"])
    assert not _cgroup_dirs(daemon.home)


async def test_pids_limit_stops_a_fork_bomb_and_harms_no_one_else(http, limited):
    daemon = limited
    workspace = await make_workspace(http, daemon)
    bystander = await create(http, daemon, "peas", {"workspace_id": workspace, "uses": "Upper", "py_modules": ["upper.py"]})
    pea = await _pea(http, daemon, "ForkBomb", {"pids": 64}, uses_with={"most": 200, "sleep_s": 30})
    log = await wait_until(lambda: _log_with(http, daemon, pea["id"], "forkbomb made"), 60, "the fork bomb to be done")
    made, refused = map(int, re.search(r"forkbomb made (\d+) refused (\d+)", log).groups())
    group = _group_of(pea["pid"], "pids")
    current, events = int((group / "pids.current").read_text()), (group / "pids.events").read_text()
    print(f"fork bomb under pids: 64: made {made}, refused {refused}; pids.current {current}; {events.strip()}")
    assert refused > 0 and made < 64 and current <= 64
    assert int(events.split()[1]) >= refused
    # The daemon and the other object go on.
    async with http.get(daemon.url + "/status") as resp:
        assert resp.status == 200
    assert (await get(http, daemon, "peas", bystander["id"]))["state"] == "ready"
    assert (await get(http, daemon, "peas", pea["id"]))["state"] == "ready"
    await _delete(http, daemon, pea["id"])
    await _delete(http, daemon, bystander["id"])
    assert not _cgroup_dirs(daemon.home)


async def _log_with(http, daemon, object_id: str, text: str) -> str | None:
    log = await _log(http, daemon, object_id)
    return log if text in log else None


async def test_bad_limits_are_400_and_start_nothing(http, daemon):
    workspace = await make_workspace(http, daemon)
    base = {"workspace_id": workspace, "uses": "Upper", "py_modules": ["upper.py"]}
    for limits, words in [({"memory": "lots"}, "size like"), ({"memory": "1KiB"}, "at least"), ({"cpus": 0}, "at least"),
                          ({"cpus": "1"}, "number of cores"), ({"cpus": 1000}, "core(s)"), ({"pids": 0}, "at least 1"),
                          ({"pids": 1.5}, "whole number"), ({"disk": "1GiB"}, "unknown limit"), ([], "must be an object")]:
        answer = await create(http, daemon, "peas", {**base, "limits": limits}, expect=400)
        assert words in answer["message"], (limits, answer)
    async with http.get(daemon.url + "/peas") as resp:
        assert await resp.json() == []


async def test_the_restart_policy_applies_after_an_oom_kill(http, limited):
    daemon = limited
    pea = await _pea(http, daemon, "Hog", {"memory": "200MiB"}, uses_with={"mib": 400}, restart="on-failure")

    async def ended_again():
        obj = await get(http, daemon, "peas", pea["id"])
        return obj if obj["state"] == "exited" and obj["restarts"] >= 1 else None

    obj = await wait_until(ended_again, 90, "the hog to be restarted and ended again", interval=0.1)
    assert obj["error"].startswith("ended by its memory limit"), obj["error"]
    await _delete(http, daemon, pea["id"])


async def test_a_flows_limits_cap_its_whole_process_tree(http, limited):
    daemon = limited
    flow_yaml = EXECUTORS / "flow_http.yml"
    data = form(("flow", "flow.yml", flow_yaml), UPPER)
    data.add_field("limits", '{"memory": "2GiB", "pids": 512}')
    async with http.post(daemon.url + "/flows", data=data) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    assert flow["limits"] == {"memory": 2 * 1024**3, "pids": 512}
    group = _group_of(flow["pid"], "memory")
    assert (group / "memory.limit_in_bytes").read_text().strip() == str(2 * 1024**3)
    members = set(map(int, (group / "cgroup.procs").read_text().split()))
    assert set(tree_pids(flow["pid"])) <= members and len(members) >= 3  # the flow, its gateway and executor
    async with http.delete(f"{daemon.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    assert not _cgroup_dirs(daemon.home)


async def test_a_remote_parts_limits_are_enforced_on_its_daemon(http, limited, daemon_factory):

    a = limited
    b = daemon_factory(host="127.0.0.2")
    flow_yaml = remote_flow(("upper_b", b.url, "    limits: {memory: 1GiB, pids: 256}\n"))
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", flow_yaml), UPPER)) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    async with http.get(b.url + "/pods") as resp:
        [pod] = await resp.json()
    assert pod["limits"] == {"memory": 1024**3, "pids": 256}
    assert (_group_of(pod["pid"], "pids") / "pids.max").read_text().strip() == "256"
    async with http.delete(f"{a.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    assert not _cgroup_dirs(b.home)
