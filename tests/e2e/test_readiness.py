"""A 201 only for a Flow that really serves, and a reason for every object that ended.

Jina 3.34 refuses an Executor whose `__init__` takes no `**kwargs`; the Flow then aborts, but
its gateway binds its port for a moment while it does. A readiness check on the port alone
answered 201 for 5 of 13 such gRPC Flows (issue 19).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import aiohttp

from tests.conftest import EXECUTORS, form, wait_until
from tests.e2e.helpers import get

PROTOCOLS = ("grpc", "websocket", "http")
TRIES = 20
AT_ONCE = 6  # creates in flight: each failing Flow costs about a second of CPU on 2 cores


def refused_flow(protocol: str) -> bytes:
    return (f"jtype: Flow\nwith:\n  protocol: {protocol}\n"
            "executors:\n  - name: refused\n    uses: Refused\n    py_modules: refused.py\n").encode()


async def test_a_flow_jina_refuses_is_422_every_time_over_every_protocol(http, daemon):
    parts = [("files", "refused.py", EXECUTORS / "refused.py")]
    parts += [("files", f"{protocol}.yml", refused_flow(protocol)) for protocol in PROTOCOLS]
    async with http.post(daemon.url + "/workspaces", data=form(*parts)) as resp:
        assert resp.status == 201, await resp.text()
        ws = (await resp.json())["id"]
    slots = asyncio.Semaphore(AT_ONCE)

    async def create(protocol: str) -> tuple[str, int, dict]:
        async with slots, http.post(daemon.url + "/flows", json={"workspace_id": ws, "filename": f"{protocol}.yml"}) as resp:
            return protocol, resp.status, await resp.json()

    answers = await asyncio.gather(*(create(protocol) for _ in range(TRIES) for protocol in PROTOCOLS))
    statuses = collections.Counter((protocol, status) for protocol, status, _ in answers)
    assert statuses == {(protocol, 422): TRIES for protocol in PROTOCOLS}, [a for a in answers if a[1] != 422][:3]
    for _, _, answer in answers:
        assert answer["error"] == "failed_to_start"
        # Why, in the tail of its log and in the message (Jina's own words).
        assert any("can not import module" in line and "refused.py" in line for line in answer["log_tail"]), answer
        assert "does not follow the full signature" in answer["message"], answer["message"]

    async with http.get(daemon.url + "/flows") as resp:
        flows = await resp.json()
    assert len(flows) == TRIES * len(PROTOCOLS)
    assert all(f["state"] == "failed" and "add `**kwargs`" in f["error"] for f in flows), flows[0]


async def test_an_object_that_ends_by_itself_says_why(http, daemon):
    flow_yaml = b"jtype: Flow\nwith:\n  protocol: http\nexecutors:\n  - name: saboteur\n    uses: Saboteur\n    py_modules: unruly.py\n"
    body = form(("flow", "flow.yml", flow_yaml), ("files", "unruly.py", EXECUTORS / "unruly.py"))
    async with http.post(daemon.url + "/flows", data=body) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    with contextlib.suppress(aiohttp.ClientError):  # its answer may never come
        async with http.post(f"http://127.0.0.1:{flow['ports']['gateway']}/default", json={"data": [{"text": "x"}]}) as resp:
            await resp.read()

    async def part_exited():
        now = await get(http, daemon, "flows", flow["id"])
        return now if now["parts"][1]["state"] == "exited" else None

    # The executor is a part of its own: it ends alone, says why, and its Flow says it is degraded.
    now = await wait_until(part_exited, 30, "the executor to end")
    part = now["parts"][1]
    # Its exit (SIGKILL) or the end of its one process, whichever the daemon saw first.
    assert part["name"] == "saboteur" and part["error"].startswith(("it was ended by SIGKILL", "its runtime process")), part["error"]
    assert "the disk under /data is gone" in part["error"]
    assert now["state"] == "ready" and now["degraded"] is True
