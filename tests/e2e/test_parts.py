"""A Flow is its parts (issue 15): each executor replica a process jinad supervises alone,
replaced one at a time by a rolling update, added and removed by scaling, while Jina's own
Client sends one request after another through the gateway and gets no failed answer."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import threading

from tests.conftest import EXECUTORS, wait_until
from tests.e2e.helpers import create, get, make_workspace, ok, run_cli

FLOW = b"""jtype: Flow
with:
  protocol: grpc
executors:
  - name: upper
    uses: Upper
    py_modules: upper.py
    replicas: 2
    uses_with:
      suffix: -v1
"""
CRASH = ("files", "crash.py", EXECUTORS / "crash.py")
MAX_REQUESTS = 100_000  # the loop's bound; it is stopped long before


class RequestLoop:
    """Jina's Client in a thread of its own, sending a request as soon as the last one was
    answered, counting the answers by text and keeping every failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from docarray import DocList
        from docarray.documents import TextDoc
        from jina import Client

        client = Client(host="127.0.0.1", port=self.port, protocol="grpc")
        for _ in range(MAX_REQUESTS):
            if self._stop.is_set():
                return
            try:
                docs = client.post("/", inputs=DocList[TextDoc]([TextDoc(text="a")]), return_type=DocList[TextDoc])
                self.answers[docs[0].text] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                self.failures.append(f"{type(exc).__name__}: {exc}"[:300])

    @property
    def count(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    async def more(self, n: int, what: str) -> None:
        """Wait until `n` more requests were answered (or failed)."""
        goal = self.count + n
        await wait_until(lambda: self.count >= goal, 60, f"{n} more answers {what}")

    async def __aenter__(self) -> "RequestLoop":
        self._thread.start()
        await self.more(10, "at first")
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 60)


async def patch(http, daemon, flow_id: str, name: str, body: dict, expect: int, query: str = "") -> dict:
    async with http.patch(f"{daemon.url}/flows/{flow_id}/executors/{name}{query}", json=body) as resp:
        answer = await resp.json()
        assert resp.status == expect, answer
        return answer


def executors(flow: dict) -> list[dict]:
    return [part for part in flow["parts"] if part["kind"] == "executor"]


async def all_ready(http, daemon, flow_id: str, replicas: int) -> dict | None:
    flow = await get(http, daemon, "flows", flow_id)
    ready = flow["state"] == "ready" and len(executors(flow)) == replicas and all(p["state"] == "ready" for p in executors(flow))
    return flow if ready and not flow["degraded"] else None


async def test_rolling_update_and_scaling_fail_no_request_and_a_bad_update_is_rolled_back(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", FLOW), CRASH)
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml", "restart": "on-failure"})
    assert [(p["name"], p["replica"], p["kind"], p["state"]) for p in flow["parts"]] == [
        ("gateway", 0, "gateway", "ready"), ("upper", 0, "executor", "ready"), ("upper", 1, "executor", "ready")]
    assert flow["degraded"] is False and flow["parts"][1]["port"] == flow["ports"]["upper"]
    peas = await (await http.get(daemon.url + "/peas")).json()
    assert peas == []  # parts are shown in their Flow, not as objects of their own

    async with RequestLoop(flow["ports"]["gateway"]) as loop:
        assert set(loop.answers) == {"A-v1"}
        before = {p["replica"]: p["pid"] for p in executors(flow)}
        updated = await patch(http, daemon, flow["id"], "upper", {"uses_with": {"suffix": "-v2"}}, 200)
        assert all(p["state"] == "ready" and p["pid"] != before[p["replica"]] for p in executors(updated))
        assert [p["port"] for p in executors(updated)] == [p["port"] for p in executors(flow)]  # on the same ports
        old = loop.answers["A-v1"]
        await loop.more(20, "after the update")
        assert loop.answers["A-v1"] == old and loop.answers["A-v2"] >= 20  # every answer since is the new version

        scaled = await patch(http, daemon, flow["id"], "upper", {"replicas": 3}, 200)
        third = executors(scaled)[2]
        assert (third["replica"], third["state"], third["port"]) == (2, "ready", scaled["ports"]["upper/2"])

        async def third_answers() -> bool:
            async with http.get(f"{daemon.url}/logs/{third['id']}?tail=all") as resp:
                return "upper handled" in await resp.text()

        await wait_until(third_answers, 30, "the new replica to be sent requests")
        accepted = await patch(http, daemon, flow["id"], "upper", {"replicas": 2}, 202, "?wait=false")
        assert accepted["id"] == flow["id"]
        await patch(http, daemon, flow["id"], "upper", {"replicas": 1}, 409)  # one update at a time
        await wait_until(lambda: all_ready(http, daemon, flow["id"], 2), 60, "the scale down")
        await loop.more(20, "after scaling")
        assert loop.failures == []

        refused = await patch(http, daemon, flow["id"], "upper", {"uses": "Crash", "py_modules": ["crash.py"]}, 422)
        assert "rolled back" in refused["message"] and any("deliberate crash" in line for line in refused["log_tail"])
        back = await wait_until(lambda: all_ready(http, daemon, flow["id"], 2), 60, "the rollback")
        count = loop.count
        await loop.more(20, "after the rollback")
        assert loop.failures == [] and loop.count > count
        assert set(loop.answers) == {"A-v1", "A-v2"}  # never an answer of the crashing version

        # One replica killed: that part alone is started again, the gateway and the other replica stay.
        victim, other = executors(back)
        os.kill(victim["pid"], signal.SIGKILL)

        async def restarted():
            now = await all_ready(http, daemon, flow["id"], 2)
            return now if now and executors(now)[0]["pid"] != victim["pid"] else None

        again = await wait_until(restarted, 60, "the killed replica to be started again")
        assert executors(again)[0]["restarts"] == victim["restarts"] + 1
        assert executors(again)[1]["pid"] == other["pid"] and again["parts"][0]["pid"] == back["parts"][0]["pid"]
        assert again["restarts"] == flow["restarts"] and again["state"] == "ready"
        await loop.more(10, "after the kill")


async def test_an_update_of_what_does_not_run_as_parts_is_refused(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", FLOW))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})
    missing = await patch(http, daemon, flow["id"], "nope", {"replicas": 2}, 404)
    assert "no executor 'nope'" in missing["message"]
    too_many = await patch(http, daemon, flow["id"], "upper", {"replicas": 99}, 400)
    assert "at most" in too_many["message"]
    await patch(http, daemon, flow["id"], "upper", {"replicas": 0}, 400)
    # What could never start is refused before a serving replica is stopped for it.
    for never in ({"envs": {"A": {"b": 1}}}, {"envs": {"A": "x\u0000y"}}, {"uses_with": {"big": "x" * 200_000}},
                  {"uses": "U" * 5000}):
        await patch(http, daemon, flow["id"], "upper", never, 400)
    await patch(http, daemon, "jflow-0000", "upper", {"replicas": 2}, 404)
    after = await get(http, daemon, "flows", flow["id"])
    assert len(executors(after)) == 2 and after["state"] == "ready" and after["last_update"] is None

    # With one replica an update has it down while the new version starts: the answer says how long.
    one = await patch(http, daemon, flow["id"], "upper", {"replicas": 1}, 200)
    assert len(executors(one)) == 1 and one["last_update"]["unavailable_s"] == 0  # the other replica served
    updated = await patch(http, daemon, flow["id"], "upper", {"uses_with": {"suffix": "-v2"}}, 200)
    report = updated["last_update"]
    assert (report["executor"], report["state"]) == ("upper", "done") and report["unavailable_s"] > 0
    assert report["started_at"] <= report["finished_at"]


async def test_parts_are_marked_in_the_flows_log_and_shown_and_updated_by_the_cli(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", FLOW))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})

    async def text(query: str, expect: int = 200) -> str:
        async with http.get(f"{daemon.url}/logs/{flow['id']}?follow=false&tail=all{query}") as resp:
            assert resp.status == expect, await resp.text()
            return await resp.text()

    whole = await text("")
    assert "[upper/0] upper executor ready" in whole and "[upper/1] upper executor ready" in whole
    one = await text("&part=upper/1")
    assert "upper executor ready" in one and "[upper/" not in one and "Flow is ready" not in one
    assert "its parts: upper/0, upper/1" in await text("&part=upper/7", 404)
    replica = next(part["id"] for part in (await get(http, daemon, "flows", flow["id"]))["parts"] if part["kind"] == "executor")
    async with http.get(f"{daemon.url}/logs/{replica}?part=upper/0") as resp:  # a part of a Flow has no parts
        assert resp.status == 400 and "is a pea" in (await resp.json())["message"], await resp.text()

    updated = await ok(daemon.url, "flow", "update", flow["id"], "upper", "--replicas", "3", "--uses-with", '{"suffix": "-x"}')
    assert "upper/2" in updated and updated.count(" ready ") >= 4  # the gateway and three replicas
    shown = await ok(daemon.url, "get", flow["id"])
    assert "PART" in shown and "upper/2" in shown and "degraded" in shown
    refused = await run_cli(daemon.url, "flow", "update", flow["id"], "upper")
    assert refused.code == 1 and "any of" in refused.err
    logs = await ok(daemon.url, "logs", flow["id"], "--part", "upper/2", "--tail", "all")
    assert "upper executor ready" in logs


async def test_a_daemon_stopped_mid_update_starts_the_flow_as_it_was_and_a_part_is_the_flows(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", FLOW))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml"})
    part = executors(flow)[0]
    async with http.delete(f"{daemon.url}/peas/{part['id']}") as resp:  # a replica is its Flow's to remove
        assert resp.status == 409 and "PATCH" in (await resp.json())["message"]

    # An update whose first new replica is still starting when the daemon stops (SIGTERM).
    await patch(http, daemon, flow["id"], "upper", {"uses": "SlowUpper", "uses_with": {"delay": 60, "suffix": "-v2"}},
                202, "?wait=false")

    async def new_replica_starting() -> bool:
        async with http.get(f"{daemon.url}/logs/{flow['id']}?tail=all&follow=false") as resp:
            return "slow upper starting" in await resp.text()

    await wait_until(new_replica_starting, 60, "the new version's first replica to be starting")
    assert daemon.stop(signal.SIGTERM) == 0  # no update restarts a replica while the daemon stops them
    daemon.start()
    back = await wait_until(lambda: all_ready(http, daemon, flow["id"], 2), 120, "the Flow back after the restart")
    assert back["last_update"]["state"] in ("interrupted", "running", "rolled_back")
    async with RequestLoop(back["ports"]["gateway"]) as loop:
        assert set(loop.answers) == {"A-v1"}  # the version that ran, not the one the update never finished
    async with http.post(f"{daemon.url}/flows/{flow['id']}/restart") as resp:
        assert resp.status == 200, await resp.text()  # and it starts again as it was
    done = await wait_until(lambda: get(http, daemon, "flows", flow["id"]), 10, "the Flow")
    assert done["last_update"]["state"] == "rolled_back"


async def test_a_flow_that_ended_for_good_ends_its_replicas(http, daemon):
    ws = await make_workspace(http, daemon, ("files", "flow.yml", FLOW))
    flow = await create(http, daemon, "flows", {"workspace_id": ws, "filename": "flow.yml", "restart": "no"})
    os.kill(flow["pid"], signal.SIGKILL)  # the gateway

    async def ended() -> dict | None:
        now = await get(http, daemon, "flows", flow["id"])
        return now if now["state"] == "exited" and all(p["state"] == "stopped" for p in executors(now)) else None

    gone = await wait_until(ended, 60, "the Flow exited and its replicas stopped")
    assert all(p["pid"] is None for p in executors(gone))
    daemon.stop(signal.SIGTERM)
    daemon.start()  # an exited Flow's replicas are not started again with the daemon
    after = await wait_until(lambda: get(http, daemon, "flows", flow["id"]), 30, "the daemon back")
    assert after["state"] == "exited" and all(p["state"] == "stopped" for p in executors(after))
