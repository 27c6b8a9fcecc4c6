"""Remote parts without other daemons: records, deploy with roll-back, the workspace cache, and
watching and restarting a part."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from jinad.client.api import JinadError
from jinad.errors import FailedToStart
from jinad.records import object_from_record
from jinad import remotes as remotes_module
from jinad.remotes import LEFTOVERS, RemotePart, Remotes
from jinad.store import Store
from tests.conftest import wait_until

PART = {"name": "e", "jinad": "http://b:8000", "workspace_id": "jworkspace-b", "content": "c0ffee",
        "pod_id": "jpod-1", "host": "b", "ports": [21000], "address": "b:21000", "restarts": 1}
RECORD = {"id": "jflow-x", "kind": "flow", "workspace_id": "jworkspace-a", "spec": {"filename": "f.yml"}, "envs": {},
          "restart": "no", "timeout_s": 60.0, "created_at": "2026-11-30T00:00:00.000Z", "state": "ready",
          "pid": None, "address": None, "protocol": None, "ports": {}, "started_at": None, "exit_code": None,
          "restarts": 0, "error": None, "remote": [PART]}


def test_a_record_with_remote_parts_loads_and_stores_the_same_shape():
    obj = object_from_record(RECORD)
    assert obj.remote == [RemotePart(**PART)]
    stored = {**PART, "owner": ""}  # a record from before parts carried their owner
    assert dataclasses.asdict(obj)["remote"] == [stored]
    assert obj.to_json({})["remote"] == [stored]
    before_restarts = {k: v for k, v in PART.items() if k != "restarts"}  # stored before parts were restarted alone
    assert object_from_record({**RECORD, "remote": [before_restarts]}).remote[0].restarts == 0


@pytest.mark.parametrize("part", [{k: v for k, v in PART.items() if k != "pod_id"}, {**PART, "ports": ["x"]},
                                  {**PART, "name": 1}, "e"])
def test_a_remote_part_of_the_wrong_shape_is_refused(part):
    with pytest.raises((ValueError, TypeError)):
        object_from_record({**RECORD, "remote": [part]})


class FakeDaemon:
    """What Remotes asks of a daemon's Client, recorded; `refuse` names executors it fails,
    `lose_answers` how many answers to a create are lost on the way (the Pod is made)."""

    def __init__(self, url: str, refuse: set[str] = frozenset(), lose_answers: int = 0, dies_creating: bool = False) -> None:
        self.url, self.refuse, self.lose_answers, self.dies_creating = url, refuse, lose_answers, dies_creating
        self.lines: list[dict] = []  # its Pods' log, as `logs` streams it
        self.down = False  # True: it cannot be reached
        self.calls: list[tuple] = []
        self.pods: list[dict] = []

    async def upload(self, files):
        self.calls.append(("upload",))
        return {"id": f"jworkspace-{len(self.calls)}"}

    async def workspace(self, workspace_id):
        return {"state": "ready"}

    async def list(self, kind):
        if self.down:
            raise ConnectionRefusedError(f"{self.url} is down")
        return self.pods

    async def logs(self, object_id, tail):
        for line in self.lines:
            yield line

    async def create(self, kind, workspace_id, timeout_s, owner, **pod):
        self.calls.append(("create", pod["uses"]))
        if pod["uses"] in self.refuse:
            raise JinadError(422, "failed_to_start", "it crashed", {"log_tail": ["boom"]})
        n = len(self.pods) + 1
        self.pods.append({"id": f"jpod-{n}", "ports": {"executor": 21000 + n}, "address": "h:1", "owner": owner, "state": "ready",
                          "uses": pod["uses"], "pid": 100 + n, "restarts": 0, "error": None, "resources": {"processes": 1}})
        if self.lose_answers or self.dies_creating:
            self.lose_answers = max(self.lose_answers - 1, 0)
            self.down = self.dies_creating
            raise ConnectionResetError("the answer was lost")
        return self.pods[-1]

    async def delete(self, object_id):
        self.calls.append(("delete", object_id))
        self.pods = [pod for pod in self.pods if pod["id"] != object_id]

    async def request(self, method, path, timeout):
        if self.down:
            raise ConnectionRefusedError(f"{self.url} is down")
        if (method, path) == ("GET", "/"):
            return {}
        if method in ("GET", "POST"):  # a Pod, or its restart
            pod = next((pod for pod in self.pods if path.startswith(f"/pods/{pod['id']}")), None)
            if pod is None:
                raise JinadError(404, "not_found", f"no pod at {path}", {})
            if method == "POST":
                self.calls.append(("restart", pod["id"]))
                if pod["uses"] in self.refuse:
                    raise JinadError(422, "failed_to_start", "it crashed again", {"log_tail": ["boom"]})
                pod.update(state="ready", pid=pod["pid"] + 1)
            return pod
        assert method == "DELETE"
        _, plural, object_id = path.split("/")
        if plural == "pods":
            await self.delete(object_id)
        else:
            self.calls.append(("delete_workspace", object_id))


def remotes_with(*daemons: FakeDaemon, store: Store | None = None) -> Remotes:
    remotes = Remotes({}, store=store)
    by_url = {d.url: d for d in daemons}
    remotes.client = by_url.__getitem__
    return remotes


def needed(name: str, url: str, uses: str = "A") -> dict:
    return {"name": name, "jinad": url, "pod": {"uses": uses}}


async def test_the_same_files_go_up_once_and_dropping_keeps_a_workspace_in_use(tmp_path):
    (tmp_path / "a.py").write_text("")
    b = FakeDaemon("http://b:1")
    remotes = remotes_with(b)
    first = await remotes.deploy([needed("x", b.url), needed("y", b.url)], tmp_path, 5.0, "jflow-f")
    assert [call[0] for call in b.calls] == ["upload", "create", "create"]
    assert first[0].workspace_id == first[1].workspace_id and first[0].ports == [21001]
    await remotes.drop(first[:1], in_use={first[1].placed})
    assert b.calls[-1] == ("delete", first[0].pod_id)  # its workspace still serves y
    await remotes.drop(first[1:], in_use=set())
    assert b.calls[-1] == ("delete_workspace", first[1].workspace_id)
    await remotes.deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    assert b.calls[-2][0] == "upload"  # forgotten with its workspace: up again


async def test_a_part_that_fails_rolls_back_every_part_made_before_it(tmp_path):
    b, c = FakeDaemon("http://b:1"), FakeDaemon("http://c:1", refuse={"Bad"})
    remotes = remotes_with(b, c)
    with pytest.raises(FailedToStart, match="remote executor 'y' on http://c:1 failed: it crashed") as raised:
        await remotes.deploy([needed("x", b.url), needed("y", c.url, uses="Bad")], tmp_path, 5.0, "jflow-f")
    assert raised.value.details == {"remote": "y", "log_tail": ["boom"]}
    assert b.calls[-2:] == [("delete", "jpod-1"), ("delete_workspace", "jworkspace-1")]


async def test_a_part_whose_answer_was_lost_or_that_a_try_made_before_is_found_not_made_twice(tmp_path):
    b = FakeDaemon("http://b:1", lose_answers=1)
    remotes = remotes_with(b)
    [part] = await remotes.deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    assert [pod["id"] for pod in b.pods] == [part.pod_id]
    b.pods.append({**b.pods[0], "id": "jpod-dead", "state": "exited"})  # an earlier try's, ended since
    [again] = await remotes.deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    assert again.pod_id == part.pod_id and [pod["id"] for pod in b.pods] == [part.pod_id]
    assert [call[0] for call in b.calls].count("create") == 1
    [other] = await remotes.deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-g")  # another Flow's part
    assert other.pod_id != part.pod_id


async def test_a_part_whose_daemon_is_down_at_delete_is_removed_once_it_answers_even_after_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(remotes_module, "LEFTOVER_RETRY_S", (0.01,))
    (tmp_path / "a.py").write_text("")
    b, store = FakeDaemon("http://b:1"), Store(tmp_path / "state")
    [part] = await remotes_with(b).deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    b.down = True
    first_run = remotes_with(b, store=store)
    await first_run.drop([part], in_use=set())
    assert b.pods and store.load_all(LEFTOVERS, dict)[0]["id"] == part.pod_id
    await first_run.close()  # the daemon stops before B is back: the record stays
    b.down = False
    next_run = remotes_with(b, store=store)
    next_run.remove_leftovers()
    await wait_until(lambda: not b.pods and not store.load_all(LEFTOVERS, dict), 5, "the part removed and its record with it")
    assert ("delete_workspace", part.workspace_id) in b.calls
    await next_run.close()


async def test_a_watched_part_shows_as_its_pod_then_unreachable_while_its_daemon_is_silent_then_ended(tmp_path, monkeypatch):
    monkeypatch.setattr(remotes_module, "WATCH_INTERVAL_S", 0.0)
    b = FakeDaemon("http://b:1")
    [part] = await remotes_with(b).deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    seen, ended = [], []

    def report(watched: RemotePart, shown: dict) -> bool:
        seen.append(shown)
        if len(seen) == 1:
            b.down = True
        elif shown["state"] == "unreachable":  # back, and the Pod has died meanwhile
            b.down = False
            b.pods[0].update(state="exited", pid=None, exit_code=-9, error="it was ended by SIGKILL")
        return True

    def on_end(watched: RemotePart, pod: dict) -> bool:
        ended.append(pod)
        return True

    await asyncio.wait_for(remotes_with(b).watch(part, report, on_end), 5)
    assert seen[0] == {"state": "ready", "pid": 101, "restarts": 0, "error": None, "resources": {"processes": 1}}
    assert seen[1] == {"state": "unreachable", "pid": None, "restarts": 0, "resources": None,
                       "error": "remote executor 'x' on http://b:1 cannot be reached"}
    assert seen[2]["state"] == "exited" and seen[2]["error"] == "it was ended by SIGKILL"
    assert len(seen) == 3 and [pod["exit_code"] for pod in ended] == [-9]
    part.pod_id = "jpod-gone"
    assert part.seen({"state": "missing"})["error"] == "http://b:1 has no Pod jpod-gone any more"


async def test_a_part_is_restarted_as_the_same_pod_and_a_failed_restart_names_it(tmp_path):
    b = FakeDaemon("http://b:1")
    remotes = remotes_with(b)
    good, bad = await remotes.deploy([needed("x", b.url), needed("y", b.url, uses="Bad")], tmp_path, 5.0, "jflow-f")
    b.refuse = {"Bad"}
    await remotes.restart(good)
    assert b.calls[-1] == ("restart", good.pod_id) and [pod["pid"] for pod in b.pods] == [102, 102]
    with pytest.raises(FailedToStart, match="remote executor 'y' on http://b:1 failed: it crashed again"):
        await remotes.restart(bad)
    b.down = True
    with pytest.raises(FailedToStart, match="remote executor 'x': cannot reach the daemon at http://b:1"):
        await remotes.restart(good)


async def test_a_part_made_by_a_daemon_that_died_before_answering_is_removed_once_it_is_back(tmp_path, monkeypatch):
    monkeypatch.setattr(remotes_module, "LEFTOVER_RETRY_S", (0.01,))
    b, store = FakeDaemon("http://b:1", dies_creating=True), Store(tmp_path / "state")
    remotes = remotes_with(b, store=store)
    with pytest.raises(FailedToStart, match="cannot reach the daemon at http://b:1"):
        await remotes.deploy([needed("x", b.url)], tmp_path, 5.0, "jflow-f")
    assert [pod["owner"] for pod in b.pods] == ["jflow-f/x"]  # made there; no Flow here knows it
    assert store.load_all(LEFTOVERS, dict)[0]["part"]["owner"] == "jflow-f/x"
    b.down = False
    await wait_until(lambda: not b.pods and not store.load_all(LEFTOVERS, dict), 5, "the Pod found by its owner and removed")
    await remotes.close()


class Lines:
    """A Flow's log as `follow` writes into it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def append(self, stream, lines):
        self.lines += lines

    def flush(self):
        pass


async def test_a_remote_log_followed_again_by_the_next_run_of_the_daemon_goes_on_where_it_stopped(tmp_path):
    b, store = FakeDaemon("http://b:8000"), Store(tmp_path / "state")
    part = RemotePart(**PART)
    b.lines = [{"event": "log", "seq": n, "stream": "stdout", "line": f"line {n}"} for n in range(3)]
    first, sink = remotes_with(b, store=store), Lines()
    await first.follow(part, sink)
    b.lines += [{"event": "log", "seq": n, "stream": "stdout", "line": f"line {n}"} for n in range(3, 5)]
    await remotes_with(b, store=store).follow(part, sink)  # a daemon killed and started again
    assert sink.lines == [f"[e@b:8000] line {n}" for n in range(5)]
    await first.drop([part], in_use=set())
    assert not (store.root / remotes_module.COPIED / part.pod_id).exists()
