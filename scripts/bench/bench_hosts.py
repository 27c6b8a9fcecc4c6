"""9. Several machines, on the tests' test hosts (tests/hosts.py: a network namespace per host,
198.18.0.0/15 on a bridge of the run's own; needs root, else the benchmark says why and skips):

- deploy: `POST /flows` → 201 of a Flow on host A with `upper_b` on B and `upper_c` (2 replicas)
  on C, on fast links and with every link at 2 Mbit/s (tc tbf) and B behind a relay adding
  50 ms each way; baseline: the same Flow with both executors local on A. Workspace uploaded
  before; the remote parts' uploads are part of the deploy. Interleaved.
- log latency: a Ticker (executors/ticker.py, 200 lines/s for 5 s) as a remote part on B; a
  follower of the Flow's log on A (SSE, in this process) takes each line's receipt time minus
  the time the Ticker wrote it (one clock: one machine).
- partition: B's link down for 10 s while the Flow runs: seconds from the cut until the Flow's
  `error` names B, and from the link's return until it answers again with no error.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp

from common import EXECUTORS, TESTS_EXECUTORS, tmp_root, upload_workspace
from results import Figure
from tests.hosts import Network, cannot_make_hosts

UPPER = TESTS_EXECUTORS / "upper.py"
TICKER = EXECUTORS / "ticker.py"
TICK = re.compile(r"^\[ticker@[^\]]+\] TK (\d+) (\d+\.\d+) ")
PARTITION_S = 10.0


def flow_yaml(b: str | None, c: str | None, extra: str = "") -> str:
    """The Flow: upper_b on `b`, upper_c (2 replicas) on `c` (None: local), and `extra` executors."""
    where = {name: f"    jinad: {url}\n" if url else "" for name, url in (("b", b), ("c", c))}
    return ("jtype: Flow\nwith:\n  protocol: http\nexecutors:\n"
            f"  - name: upper_b\n    uses: Upper\n    py_modules: upper.py\n{where['b']}"
            f"  - name: upper_c\n    uses: Upper\n    py_modules: upper.py\n    replicas: 2\n{where['c']}" + extra)


async def post_json(http: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with http.post(url, json=body) as resp:
        answer = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"POST {url} answered {resp.status}: {json.dumps(answer)[:2000]}")
        return answer


async def delete(http: aiohttp.ClientSession, url: str) -> None:
    async with http.delete(url) as resp:
        await resp.read()


async def deploy_s(http, a, workspace_id: str, filename: str) -> float:
    """Seconds from POST /flows to its 201; the Flow is deleted after."""
    began = time.perf_counter()
    flow = await post_json(http, a.daemon.url + "/flows", {"workspace_id": workspace_id, "filename": filename})
    took = time.perf_counter() - began
    await delete(http, f"{a.daemon.url}/flows/{flow['id']}")
    return took


async def flow_state(http, url: str) -> dict:
    async with http.get(url) as resp:
        return await resp.json()


async def answers(http, a, flow: dict) -> bool:
    try:
        async with http.post(f"http://{a.address}:{flow['ports']['gateway']}/default", json={"data": [{"text": "x"}]},
                             timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


async def until(predicate, timeout: float, what: str, interval: float = 0.05) -> float:
    """Seconds until the (async) predicate holds; TimeoutError past `timeout`."""
    began = time.monotonic()
    while not await predicate():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - began


async def log_latency_ms(http, a, b, root: Path) -> list[float]:
    """Write → receipt latencies (ms) of a remote Ticker's lines in the Flow's log on A."""
    go = root / "go"
    ticker = (f"  - name: ticker\n    uses: Ticker\n    py_modules: ticker.py\n    jinad: {b.daemon.url}\n"
              f"    uses_with: {{rate: 200, seconds: 5, go_file: {go}}}\n")
    (root / "ticker-flow.yml").write_text("jtype: Flow\nwith:\n  protocol: http\nexecutors:\n" + ticker)
    workspace = upload_workspace(a.daemon, [TICKER, root / "ticker-flow.yml"])
    flow = await post_json(http, a.daemon.url + "/flows", {"workspace_id": workspace, "filename": "ticker-flow.yml"})
    latencies: list[float] = []
    try:
        async with http.get(f"{a.daemon.url}/logs/{flow['id']}?tail=0", headers={"Accept": "text/event-stream"},
                            timeout=aiohttp.ClientTimeout(total=120)) as resp:
            go.touch()
            async for raw in resp.content:
                received = time.time()
                if not raw.startswith(b"data: "):
                    continue
                line = json.loads(raw[6:]).get("line", "")
                if (match := TICK.match(line)) is not None:
                    latencies.append((received - float(match.group(2))) * 1000)
                elif line.endswith("ticker done"):
                    break
    finally:
        await delete(http, f"{a.daemon.url}/flows/{flow['id']}")
        await delete(http, f"{a.daemon.url}/workspaces/{workspace}?force=true")
    return latencies


async def partition_s(http, a, b, workspace_id: str) -> tuple[float, float]:
    """(cut → the Flow's error names B, link back → it answers with no error), in seconds."""
    flow = await post_json(http, a.daemon.url + "/flows", {"workspace_id": workspace_id, "filename": "remote.yml"})
    url = f"{a.daemon.url}/flows/{flow['id']}"
    try:
        cut_at = time.monotonic()
        b.cut()

        async def shown() -> bool:
            return b.daemon.url in ((await flow_state(http, url))["error"] or "")

        detected = await until(shown, 30, "the Flow to show B unreachable")
        await asyncio.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))
        b.heal()

        async def healed() -> bool:
            body = await flow_state(http, url)
            return body["state"] == "ready" and body["error"] is None and await answers(http, a, flow)

        recovered = await until(healed, 120, "the Flow to answer again after the partition")
    finally:
        b.heal()
        await delete(http, url)
    return detected, recovered


async def measure(quick: bool, runs: int) -> list[Figure]:
    fast, slow, local, p50, p99, detect, recover = [], [], [], [], [], [], []
    network = Network()
    try:
        with tmp_root("hosts") as root:
            a, b, c = (network.add_host(name) for name in "abc")
            for host in (a, b, c):
                host.start_daemon(root / f"home-{host.name}")
            relay = network.relay("r", b, delay_s=0.05)
            files = {"remote.yml": flow_yaml(b.daemon.url, c.daemon.url),
                     "slow.yml": flow_yaml(f"http://{relay.address}:8000", c.daemon.url),
                     "local.yml": flow_yaml(None, None)}
            for name, text in files.items():
                (root / name).write_text(text)
            workspace = upload_workspace(a.daemon, [UPPER, *(root / name for name in files)])
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
                await deploy_s(http, a, workspace, "local.yml")  # warm-up, not counted
                for _ in range(runs):
                    local.append(await deploy_s(http, a, workspace, "local.yml"))
                    fast.append(await deploy_s(http, a, workspace, "remote.yml"))
                for host in (a, b, c):
                    host.limit("2mbit")
                for _ in range(runs):
                    slow.append(await deploy_s(http, a, workspace, "slow.yml"))
                for host in (a, b, c):
                    host.unlimit()
                for _ in range(runs):
                    latencies = sorted(await log_latency_ms(http, a, b, root))
                    p50.append(latencies[len(latencies) // 2])
                    p99.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
                    detected, recovered = await partition_s(http, a, b, workspace)
                    detect.append(detected)
                    recover.append(recovered)
    finally:
        left = network.close()
        if left:
            print(f"  left behind: {left}")
    local_what = "the same Flow, both executors on A"
    return [
        Figure("hosts.deploy.fast_s", "deploy a Flow over 3 hosts (executors on B and C, 2 replicas), fast links", "s",
               fast, local_what, local),
        Figure("hosts.deploy.2mbit_50ms_s", "— every link 2 Mbit/s, B 50 ms each way away (relay)", "s", slow, local_what, local),
        Figure("hosts.logs.remote_p50_ms", "log latency, a remote part's line → a follower of the Flow's log, p50", "ms", p50,
               note="200 lines/s for 5 s from B"),
        Figure("hosts.logs.remote_p99_ms", "— p99", "ms", p99),
        Figure("hosts.partition.detect_s", f"B cut off {PARTITION_S:.0f} s: until the Flow's error names B", "s", detect),
        Figure("hosts.partition.recover_s", "— B back: until the Flow answers again with no error", "s", recover),
    ]


def run(quick: bool, runs: int) -> list[Figure]:
    reason = cannot_make_hosts()
    if reason:
        print(f"  skipped: {reason}")
        return []
    return asyncio.run(measure(quick, runs))
