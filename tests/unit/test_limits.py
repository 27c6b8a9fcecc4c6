"""`limits` parsing, and cgroup discovery and files on a fake /proc and cgroup tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from jinad.cgroups import Cgroups
from jinad.errors import BadRequest
from jinad.limits import parse_limits


def test_sizes_and_numbers_are_normalised():
    assert parse_limits(None) == {}
    assert parse_limits({"memory": "200MiB", "cpus": 0.5, "pids": 64}) == {"memory": 200 * 2**20, "cpus": 0.5, "pids": 64}
    assert parse_limits({"memory": "2GiB"})["memory"] == 2 * 2**30
    assert parse_limits({"memory": "1.5G"})["memory"] == int(1.5 * 2**30)
    assert parse_limits({"memory": "100MB"})["memory"] == 100 * 10**6
    assert parse_limits({"memory": 7 * 2**20, "cpus": 1})["cpus"] == 1.0
    assert parse_limits({"memory": None}) == {}


@pytest.mark.parametrize("limits", [{"memory": "2 bananas"}, {"memory": True}, {"memory": "1KiB"}, {"memory": -5},
                                    {"cpus": 0}, {"cpus": float("nan")}, {"cpus": float("inf")}, {"cpus": True},
                                    {"cpus": 10**6}, {"pids": 0}, {"pids": "64"}, {"pids": 2.0}, {"swap": 1}, [], "1GiB"])
def test_wrong_limits_are_refused(limits):
    with pytest.raises(BadRequest):
        parse_limits(limits)


def _fake(tmp_path: Path, controllers=("memory", "cpu", "cpuacct", "pids")) -> tuple[Path, Path]:
    proc, fs = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    mounts, own = [], []
    for n, controller in enumerate(controllers):
        mount = fs / controller
        (mount / "daemon").mkdir(parents=True)
        (mount / "daemon" / "cgroup.procs").write_text("")
        mounts.append(f"{30 + n} 25 0:{40 + n} / {mount} rw,relatime shared:{n} - cgroup cgroup rw,{controller}")
        own.append(f"{n + 1}:{controller}:/daemon")
    mounts.append(f"99 25 0:99 / {fs}/unified rw - cgroup2 cgroup2 rw")
    (proc / "self" / "mountinfo").write_text("\n".join(mounts) + "\n")
    (proc / "self" / "cgroup").write_text("\n".join(own) + "\n0::/\n")
    return proc, fs


def test_groups_live_under_the_daemons_own_cgroup_and_take_the_limits(tmp_path):
    proc, fs = _fake(tmp_path)
    cgroups = Cgroups("/home/a", proc)
    assert cgroups.available == {"memory": True, "cpus": True, "pids": True}
    # On a real cgroup fs the kernel makes the control files; here they are written as plain files.
    group = cgroups.make("jpea-1", {"memory": 200 * 2**20, "cpus": 0.5, "pids": 64})
    memory = group.dirs["memory"]
    assert memory.parent.parent == fs / "memory" / "daemon" / "jinad"
    assert (memory / "memory.limit_in_bytes").read_text() == f"{200 * 2**20}\n"
    assert (group.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (group.dirs["pids"] / "pids.max").read_text() == "64\n"
    argv = group.wrap(["jina", "executor"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-2:] == ["jina", "executor"]
    assert argv[4] == "4" and all(a.endswith("cgroup.procs") for a in argv[5:9])
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_killed() == 2


def test_a_missing_controller_is_a_clear_400(tmp_path):
    proc, _ = _fake(tmp_path, controllers=("cpu", "cpuacct"))
    cgroups = Cgroups("/home/a", proc)
    assert cgroups.available == {"memory": False, "cpus": True, "pids": False}
    cgroups.check({"cpus": 1.0})
    with pytest.raises(BadRequest, match="cannot enforce limits on memory.*it can enforce cpus"):
        cgroups.check({"memory": 2**30, "cpus": 1.0})


def test_no_cgroup_fs_enforces_nothing(tmp_path):
    (tmp_path / "self").mkdir()
    assert Cgroups("/home/a", tmp_path).available == {"memory": False, "cpus": False, "pids": False}


def test_the_join_script_joins_then_execs(tmp_path):
    """The wrapper writes its own pid into each file, then becomes the command (same pid)."""
    import subprocess

    from jinad.cgroups import Group

    group = Group({"x": tmp_path / "x", "y": tmp_path / "y"}, {})
    for directory in group.dirs.values():
        directory.mkdir()
    out = subprocess.run(group.wrap(["sh", "-c", "echo $$"]), capture_output=True, text=True, check=True).stdout.strip()
    assert (tmp_path / "x" / "cgroup.procs").read_text().strip() == out == (tmp_path / "y" / "cgroup.procs").read_text().strip()


@pytest.mark.parametrize("limits, words", [
    ({"pids": 99999999999}, "at most"),                       # past pid_max: the kernel refused it at start
    ({"memory": 99999999999999999999999999}, "at most"),     # past the kernel's 64-bit counter
    ({"memory": "9999999TiB"}, "at most"),
    ({"memory": "２００MiB"}, "size like"),                    # non-ASCII digits are no size
])
def test_limits_past_what_the_kernel_holds_are_refused_up_front(limits, words):
    with pytest.raises(BadRequest, match=words):
        parse_limits(limits)
