"""The supervise loop with a fake spawn: restart by policy, back-off, give-up; no process runs. So
too a Flow's remote part restarted alone, with a fake remote daemon."""

from __future__ import annotations

import asyncio

import pytest

from jinad import objects, starting
from jinad.config import Config
from jinad.errors import FailedToStart
from jinad.logs import Log
from jinad.objects import ObjectManager
from jinad.records import JObject
from jinad.remotes import RemotePart
from jinad.runner import Runner
from jinad.store import Store
from jinad.workspaces import WorkspaceManager


class FakeChild:
    """Gets ready (or not) and then ends with `code`, as planned for its start."""

    def __init__(self, plan: list[tuple[bool, int]], pid: int) -> None:
        self.pid = pid
        self.ready, self.code = plan.pop(0) if plan else (True, 0)

    async def wait(self, grace, ports=()):
        await asyncio.sleep(0.01)
        return self.code, None

    async def stop(self, grace):
        return self.code

    def explain(self, reason):
        return reason

    def ended(self):
        return f"it ended by itself with exit code {self.code}"


@pytest.fixture
async def manager(tmp_path, monkeypatch):
    """An ObjectManager whose children are fakes following `plan` (ready?, exit code) per start."""
    config = Config(home=str(tmp_path / "home"), host="127.0.0.1", port_range="32000-32099", restart_max_retries=2)
    store = Store(config.home / "state")
    workspaces = WorkspaceManager(config, store)
    workspaces.load()
    manager = ObjectManager(config, store, workspaces)
    manager.plan, manager.spawned = [], []
    sleeps = []
    manager.backoffs = sleeps

    async def spawn(argv, *args, **kwargs):
        manager.spawned.append(argv)
        return FakeChild(manager.plan, pid=1000 + len(manager.spawned))

    async def wait_ready(child, host, probes, timeout):
        return None if child.ready else "it never answered"

    async def no_sleep(seconds):
        sleeps.append(seconds)

    monkeypatch.setattr(starting, "spawn", spawn)
    monkeypatch.setattr(starting, "wait_ready", wait_ready)
    monkeypatch.setattr(objects, "backoff", no_sleep)
    yield manager
    for runner in manager.runners.values():
        runner.log.close()


async def pea(manager, restart: str, plan: list[tuple[bool, int]]):
    manager.plan[:] = plan
    ws = await manager.workspaces.create(_files({"a.py": b""}))
    obj = await manager.create("pea", {"workspace_id": ws.id, "uses": "A", "restart": restart, "protocol": "grpc"})
    await manager.runners[obj.id].task
    return obj


async def _files(files: dict[str, bytes]):
    for name, data in files.items():
        yield _Part(name, data)


class _Part:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.filename, self._data = "files", name, data

    async def read_chunk(self, size: int = 65536) -> bytes:
        data, self._data = self._data, b""
        return data


async def test_no_policy_ends_exited_after_one_run(manager):
    obj = await pea(manager, "no", [(True, 3)])
    assert (obj.state, obj.exit_code, obj.restarts, len(manager.spawned)) == ("exited", 3, 0, 1)


async def test_on_failure_restarts_with_growing_back_off_then_gives_up(manager):
    obj = await pea(manager, "on-failure", [(True, 1), (False, 1), (False, 1)])
    assert obj.state == "failed" and obj.error.startswith("gave up after 2 restarts in a row")
    assert manager.backoffs == [1, 2] and obj.restarts == 2 and len(manager.spawned) == 3


async def test_on_failure_does_not_restart_a_clean_exit_but_always_does(manager):
    obj = await pea(manager, "on-failure", [(True, 0)])
    assert obj.state == "exited" and obj.restarts == 0
    obj = await pea(manager, "always", [(True, 0), (True, 0), (True, 0)])
    assert obj.state == "failed" and obj.restarts == 2


async def test_a_remote_part_that_ended_is_restarted_alone_by_the_flows_policy_with_back_off(manager, tmp_path):
    flow = JObject(id="jflow-f", kind="flow", workspace_id="jworkspace-w", spec={}, envs={}, restart="on-failure",
                   timeout_s=1.0, created_at="2026-11-30T00:00:00.000Z", state="ready")
    part = RemotePart(name="far", jinad="http://o:8000", workspace_id="w", content="c", pod_id="jpod-p", host="o", ports=[1], address="o:1")
    flow.remote = [part]
    runner = manager.runners[flow.id] = Runner(log=Log(tmp_path / "f.log", 10, 1 << 20, 1 << 20, 1))
    manager.objects[flow.id] = flow
    outcomes = [FailedToStart("remote executor 'far' on http://o:8000 failed: it crashed"), None]

    async def restart(restarted):
        assert restarted is part
        if (outcome := outcomes.pop(0)) is not None:
            raise outcome

    manager.remotes.restart = restart
    killed = {"state": "exited", "exit_code": -9}
    assert await manager._restart_remote(flow, runner, part, killed, failures := {}) is True
    assert manager.backoffs == [1, 2] and part.restarts == 1 and outcomes == []
    assert await manager._restart_remote(flow, runner, part, {"state": "exited", "exit_code": 0}, failures) is False  # a clean exit
    assert await manager._restart_remote(flow, runner, part, killed, failures) is False  # dead again at once: 2 in a row
    assert runner.log.tail(1)[0].line.startswith("gave up starting remote executor 'far' again after 2 restarts in a row")
    outcomes[:] = [FailedToStart("it crashed")] * 2
    assert await manager._restart_remote(flow, runner, part, killed, {}) is False  # it never starts again
    assert manager.backoffs == [1, 2, 1, 2] and part.restarts == 1 and outcomes == []
    assert runner.log.tail(1)[0].line.endswith("after 2 restarts in a row; the last: it crashed")
    flow.restart = "no"
    assert await manager._restart_remote(flow, runner, part, {"state": "failed"}, {}) is False
    assert runner.log.tail(1)[0].line.endswith("the Flow's restart policy (no) leaves it so")
