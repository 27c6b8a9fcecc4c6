"""One Flow over three real daemons on one machine (127.0.0.1, .2, .3)."""

from __future__ import annotations

import asyncio
import signal

from tests.conftest import EXECUTORS, form, wait_until
from tests.e2e.helpers import ask_http, read_stream, remote_flow

UPPER = ("files", "upper.py", EXECUTORS / "upper.py")


def two_remote_flow(b_url: str, c_url: str) -> bytes:
    return remote_flow(("upper_b", b_url, '    uses_with: {suffix: "-b"}\n'),
                       ("upper_c", c_url, '    uses_with: {suffix: "-c"}\n    replicas: 2\n'))


async def listing(http, daemon, path: str) -> list:
    async with http.get(daemon.url + path) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_flow_with_executors_on_two_remote_daemons(http, daemon_factory):
    a = daemon_factory()
    b = daemon_factory(host="127.0.0.2")
    c = daemon_factory(host="127.0.0.3")
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", two_remote_flow(b.url, c.url)), UPPER)) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    assert [(p["name"], p["jinad"]) for p in flow["remote"]] == [("upper_b", b.url), ("upper_c", c.url)]
    assert len(flow["remote"][1]["ports"]) == 2  # both replicas of upper_c
    assert await ask_http(http, flow["ports"]["gateway"], "hi") == "HI-B-c"

    for remote in (b, c):
        pods = await listing(http, remote, "/pods")
        assert [p["state"] for p in pods] == ["ready"]
        assert len(await listing(http, remote, "/workspaces")) == 1

    logs, _ = await read_stream(http, f"{a.url}/logs/{flow['id']}?tail=all&follow=false")
    marked = [e["line"] for e in logs if e["line"].startswith("[upper_b@127.0.0.2:")]
    assert any("upper handled 1 docs" in line for line in marked), marked[-5:]

    async with http.delete(f"{a.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    for remote in (b, c):
        assert await listing(http, remote, "/pods") == []
        assert await listing(http, remote, "/workspaces") == []


async def test_a_stopped_remote_rolls_every_part_back(http, daemon_factory):
    a = daemon_factory()
    b = daemon_factory(host="127.0.0.2")
    c = daemon_factory(host="127.0.0.3")
    c.stop(signal.SIGTERM)
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", two_remote_flow(b.url, c.url)), UPPER)) as resp:
        assert resp.status == 422
        error = await resp.json()
    assert error["error"] == "failed_to_start"
    assert "upper_c" in error["message"] and c.url in error["message"]
    assert await listing(http, b, "/pods") == []
    assert await listing(http, b, "/workspaces") == []
    assert await listing(http, a, "/flows") == []
    assert await listing(http, a, "/workspaces") == []


async def test_same_files_go_up_once_and_a_remote_that_dies_shows_on_the_flow(http, daemon_factory):
    a = daemon_factory()
    b = daemon_factory(host="127.0.0.2")
    async with http.post(a.url + "/workspaces", data=form(UPPER, ("files", "flow.yml", remote_flow(("upper_b", b.url, ""))))) as resp:
        ws = (await resp.json())["id"]
    flows = []
    for _ in range(2):
        async with http.post(a.url + "/flows", json={"workspace_id": ws, "filename": "flow.yml"}) as resp:
            assert resp.status == 201, await resp.text()
            flows.append(await resp.json())
    assert len(await listing(http, b, "/workspaces")) == 1
    assert len(await listing(http, b, "/pods")) == 2

    # The remote part of the first Flow goes away behind its back: shown as a local part that
    # ended would be (its restart policy, `no`, leaves it so), the Flow ready but degraded.
    async with http.delete(f"{b.url}/pods/{flows[0]['remote'][0]['pod_id']}") as resp:
        assert resp.status == 200
    flow = await wait_until(lambda: _degraded(http, a, flows[0]["id"]), 30, "the Flow to show its remote part gone")
    [part] = [p for p in flow["parts"] if p.get("jinad") == b.url]
    assert (flow["state"], part["state"]) == ("ready", "missing") and b.url in part["error"]

    async with http.delete(f"{a.url}/flows/{flows[0]['id']}") as resp:
        assert resp.status == 200
    assert len(await listing(http, b, "/workspaces")) == 1  # still used by the second Flow
    async with http.post(a.url + "/flows", json={"workspace_id": ws, "filename": "flow.yml"}) as resp:
        assert resp.status == 201, await resp.text()
        flows.append(await resp.json())

    async def delete(flow: dict) -> None:
        async with http.delete(f"{a.url}/flows/{flow['id']}") as resp:
            assert resp.status == 200

    await asyncio.gather(*(delete(flow) for flow in flows[1:]))  # deleted together: the last one removes it
    assert await listing(http, b, "/pods") == []
    assert await listing(http, b, "/workspaces") == []


async def _degraded(http, daemon, flow_id):
    async with http.get(f"{daemon.url}/flows/{flow_id}") as resp:
        body = await resp.json()
        return body if body["degraded"] else None


async def test_a_restart_or_a_daemon_restart_brings_back_a_remote_part_that_went_away(http, daemon_factory):
    a = daemon_factory()
    b = daemon_factory(host="127.0.0.2")
    async with http.post(a.url + "/flows", data=form(("flow", "flow.yml", remote_flow(("upper_b", b.url, ""))), UPPER)) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    url = f"{a.url}/flows/{flow['id']}"

    async def lose_the_remote_part(pod_id: str) -> None:
        async with http.delete(f"{b.url}/pods/{pod_id}") as resp:
            assert resp.status == 200

    await lose_the_remote_part(flow["remote"][0]["pod_id"])
    async with http.post(url + "/restart") as resp:
        assert resp.status == 200, await resp.text()
        restarted = await resp.json()
    assert restarted["remote"][0]["pod_id"] != flow["remote"][0]["pod_id"]
    assert [p["state"] for p in await listing(http, b, "/pods")] == ["ready"]
    assert await ask_http(http, restarted["ports"]["gateway"], "again") == "AGAIN"

    a.stop(signal.SIGTERM)
    await lose_the_remote_part(restarted["remote"][0]["pod_id"])
    a.start()

    async def recovered():
        async with http.get(url) as resp:
            body = await resp.json()
            return body if body["state"] == "ready" else None

    back = await wait_until(recovered, 120, "the Flow to be ready again after the daemon's restart")
    assert back["remote"][0]["pod_id"] not in (flow["remote"][0]["pod_id"], restarted["remote"][0]["pod_id"])
    assert await ask_http(http, back["ports"]["gateway"], "back") == "BACK"
    assert len(await listing(http, b, "/workspaces")) == 1  # the files went up once

    async with http.delete(url) as resp:
        assert resp.status == 200
    assert await listing(http, b, "/pods") == []
    assert await listing(http, b, "/workspaces") == []
