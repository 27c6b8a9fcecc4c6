"""One Flow over three machines: test hosts (tests/hosts.py) A, B and C, each a network namespace
with its own address and a daemon on the default port and port range. The Flow runs on A with
an executor on B and one (two replicas) on C; links are slowed down, cut, daemons and parts
killed, and the Flow must carry on by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import pytest

from tests.conftest import JINAD, form, wait_until
from tests.e2e.helpers import UPPER, ask_http, read_stream, remote_flow

ANSWER = "HI-B-c"


@pytest.fixture
def hosts(network, tmp_path):
    """Hosts a, b and c, each with its daemon."""
    made = [network.add_host(name) for name in "abc"]
    for host in made:
        host.start_daemon(tmp_path / f"home-{host.name}")
    return made


def flow_yaml(b_url: str, c_url: str) -> bytes:
    return remote_flow(("upper_b", b_url, '    uses_with: {suffix: "-b"}\n'),
                       ("upper_c", c_url, '    uses_with: {suffix: "-c"}\n    replicas: 2\n'))


async def deploy(http, a, b_url: str, c_url: str, **options: str) -> dict:
    async with http.post(a.daemon.url + "/flows", data=form(("flow", "flow.yml", flow_yaml(b_url, c_url)), UPPER, **options)) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def get(http, url: str) -> dict | list:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def pod_ids(flow: dict) -> tuple[str, str]:
    """The Pod ids of the Flow's parts on B and on C."""
    by_name = {part["name"]: part["pod_id"] for part in flow["remote"]}
    return by_name["upper_b"], by_name["upper_c"]


async def ask(http, a, flow: dict, text: str = "hi") -> str:
    return await ask_http(http, flow["ports"]["gateway"], text, host=a.address)


async def answers(http, a, flow: dict) -> bool:
    """Does the Flow answer right now (its executors reached)?"""
    try:
        return await asyncio.wait_for(ask(http, a, flow), 5) == ANSWER
    except (AssertionError, OSError, asyncio.TimeoutError):
        return False


async def copied_and_own(http, a, flow_id: str, host, part: dict) -> tuple[list[str], list[str]]:
    """(the part's lines in the Flow's log on A, unmarked; its lines in its own log on its host)"""
    own, _ = await read_stream(http, f"{host.daemon.url}/logs/{part['pod_id']}?tail=all&follow=false")
    merged, _ = await read_stream(http, f"{a.daemon.url}/logs/{flow_id}?tail=all&follow=false")
    mark = f"[{part['name']}@{host.address}:8000] "
    return [e["line"][len(mark):] for e in merged if e["line"].startswith(mark)], [e["line"] for e in own]


async def delete_and_check_nothing_left(http, a, flow: dict, *remotes) -> None:
    async with http.delete(f"{a.daemon.url}/flows/{flow['id']}") as resp:
        assert resp.status == 200
    for host in remotes:
        assert await get(http, host.daemon.url + "/pods") == []
        assert await get(http, host.daemon.url + "/workspaces") == []


async def test_a_flow_over_three_hosts_answers_and_merges_their_logs(http, hosts):
    a, b, c = hosts
    b.daemon.stop()
    b.daemon.extra = ["--advertise-host", "b.example"]  # B says how others reach it
    b.daemon.start()
    flow = await deploy(http, a, b.daemon.url, c.daemon.url)
    # Every address is what a client on another machine dials: never the name "vm" all share.
    assert flow["address"] == f"{a.address}:{flow['ports']['gateway']}"
    assert [part["address"].split(":")[0] for part in flow["remote"]] == ["b.example", c.address]
    assert len(flow["remote"][1]["ports"]) == 2
    async with http.patch(f"{a.daemon.url}/flows/{flow['id']}/executors/upper_b", json={"uses_with": {"suffix": "-x"}}) as resp:
        assert resp.status == 400 and "not supported yet" in (await resp.json())["message"]
    for n in range(5):
        assert await ask(http, a, flow, f"hi{n}") == f"HI{n}-B-c"

    def seen_from_c(url: str):
        return json.loads(c.exec("python3", "-c", f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())").stdout)

    assert seen_from_c(f"{a.daemon.url}/flows/{flow['id']}")["address"] == flow["address"]
    [b_pod] = seen_from_c(f"{b.daemon.url}/pods")
    assert b_pod["address"].startswith("b.example:")
    assert b_pod["owner"] == f"{flow['id']}/upper_b"  # a retry of this part finds it by this

    async def merged_has_every_line(host, part: dict) -> bool:
        copied, own = await copied_and_own(http, a, flow["id"], host, part)
        return sum("upper handled 1 docs" in line for line in copied) == 5 and copied == own

    for host, part in zip((b, c), flow["remote"]):
        await wait_until(lambda: merged_has_every_line(host, part), 30, f"every line of {part['name']} in the Flow's log, marked")
    await delete_and_check_nothing_left(http, a, flow, b, c)


async def test_slow_links_and_latency_still_deploy_answer_log_and_delete(http, network, hosts):
    a, b, c = hosts
    for host in hosts:
        host.limit("2mbit")
    relay = network.relay("r", b, delay_s=0.05)  # B seen through 50 ms each way
    began = time.monotonic()
    flow = await deploy(http, a, f"http://{relay.address}:8000", c.daemon.url)
    print(f"deploy over 2 Mbit/s links, B 100 ms round trip away: {time.monotonic() - began:.1f} s")
    assert await ask(http, a, flow) == ANSWER
    # `jinad ping` run on A measures A's link to B: the relay's 2 x 50 ms are in every round trip.
    pinged = a.exec(str(JINAD), "ping", "--host", f"http://{relay.address}:8000", "-c", "3", "--json")
    assert json.loads(pinged.stdout)["min_ms"] >= 100

    async def marked() -> bool:
        merged, _ = await read_stream(http, f"{a.daemon.url}/logs/{flow['id']}?tail=all&follow=false")
        return any(e["line"].startswith(f"[upper_b@{relay.address}:8000] upper handled 1 docs") for e in merged)

    await wait_until(marked, 30, "B's line through the relay in the Flow's log")
    await delete_and_check_nothing_left(http, a, flow, b, c)


async def test_a_cut_off_host_shows_on_the_flow_and_heals_and_so_does_a_killed_daemon(http, hosts):
    a, b, c = hosts
    flow = await deploy(http, a, b.daemon.url, c.daemon.url, restart="on-failure")
    url = f"{a.daemon.url}/flows/{flow['id']}"
    pods = {host.name: [p["id"] for p in await get(http, host.daemon.url + "/pods")] for host in (b, c)}

    async def error_naming_b():
        body = await get(http, url)
        return body["error"] if body["error"] and b.daemon.url in body["error"] else None

    cut_at = time.monotonic()
    b.cut()
    shown = await wait_until(error_naming_b, 12, "the Flow to show B unreachable")  # ~6 s by design
    pinged = a.exec(str(JINAD), "ping", "--host", b.daemon.url, "-c", "1", "--timeout", "1", check=False)
    assert pinged.returncode == 3 and b.daemon.url in pinged.stderr  # cannot reach
    assert "upper_b" in shown and "cannot be reached" in shown
    body = await get(http, url)
    assert body["state"] == "ready" and body["degraded"]
    assert {p["name"]: p["state"] for p in body["parts"] if "jinad" in p} == {"upper_b": "unreachable", "upper_c": "ready"}
    assert [p["state"] for p in await get(http, c.daemon.url + "/pods")] == ["ready"]  # the rest serves on
    await asyncio.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))  # the cut lasts 10 s
    b.heal()

    async def healed():
        body = await get(http, url)
        return body["state"] == "ready" and body["error"] is None and await answers(http, a, flow)

    await wait_until(healed, 30, "the Flow to answer again with no error after the cut")
    body = await get(http, url)
    assert body["restarts"] == 0 and list(pod_ids(body)) == pods["b"] + pods["c"]
    for host in (b, c):  # no duplicate, nothing orphaned
        assert [p["id"] for p in await get(http, host.daemon.url + "/pods")] == pods[host.name]

    b.daemon.stop(signal.SIGKILL)
    await wait_until(error_naming_b, 12, "the Flow to show B's daemon gone")
    b.daemon.start()
    await wait_until(healed, 60, "the Flow to answer again after B's daemon came back")
    assert (await get(http, url))["restarts"] == 0
    assert [p["id"] for p in await get(http, b.daemon.url + "/pods")] == pods["b"]

    # Deleted while B is cut off: B's part is removed once B answers again.
    b.cut()
    async with http.delete(url) as resp:
        assert resp.status == 200
    assert await get(http, c.daemon.url + "/pods") == []
    b.heal()

    async def nothing_left_on_b():
        try:
            return await get(http, b.daemon.url + "/pods") == [] and await get(http, b.daemon.url + "/workspaces") == []
        except aiohttp.ClientError:  # the link just came up: not every packet passes yet
            return False

    await wait_until(nothing_left_on_b, 30, "B's part removed once B is back")


async def test_killed_remote_part_and_killed_flow_daemon_are_made_again(http, hosts):
    a, b, c = hosts
    flow = await deploy(http, a, b.daemon.url, c.daemon.url, restart="on-failure")
    url = f"{a.daemon.url}/flows/{flow['id']}"
    b_pod, c_pod = pod_ids(flow)

    def remote_parts(body: dict) -> dict:
        return {p["name"]: p for p in body["parts"] if "jinad" in p and p["replica"] == 0}

    b_seen = await get(http, f"{b.daemon.url}/pods/{b_pod}")
    async def b_shown():
        part = remote_parts(await get(http, url))["upper_b"]
        return part if part["state"] is not None else None

    shown = await wait_until(b_shown, 5, "B's part as B shows it")
    assert (shown["state"], shown["pid"], shown["restarts"], shown["error"]) == ("ready", b_seen["pid"], 0, None)
    assert shown["resources"]["memory_rss"] > 0
    gateway_pid = flow["pid"]

    # B's Pod killed by hand: the Flow's restart policy starts that part again alone, on B, as
    # the same Pod on the same ports; the gateway and C's part serve on meanwhile.
    os.kill(b_seen["pid"], signal.SIGKILL)

    async def b_down():
        body = await get(http, url)
        return body if body["degraded"] and remote_parts(body)["upper_b"]["state"] in ("exited", "starting") else None

    down = await wait_until(b_down, 10, "the Flow to show B's part down")
    assert down["state"] == "ready" and down["pid"] == gateway_pid

    async def b_back():
        body = await get(http, url)
        return body if not body["degraded"] and remote_parts(body)["upper_b"]["restarts"] == 1 else None

    body = await wait_until(b_back, 60, "B's part started again alone")
    assert (body["state"], body["restarts"], body["pid"], pod_ids(body)) == ("ready", 0, gateway_pid, (b_pod, c_pod))
    assert remote_parts(body)["upper_b"]["pid"] not in (None, b_seen["pid"])
    assert [p["id"] for p in await get(http, b.daemon.url + "/pods")] == [b_pod]
    await wait_until(lambda: answers(http, a, body), 30, "the Flow to answer with B's part again, its gateway unchanged")
    merged, _ = await read_stream(http, f"{a.daemon.url}/logs/{flow['id']}?tail=all&follow=false")
    assert any("remote executor 'upper_b'" in e["line"] and "starting it again there" in e["line"] for e in merged)
    # B's Pod deleted there: made again with new ports, which the gateway learns as it starts
    # again; C's part runs on.
    async with http.delete(f"{b.daemon.url}/pods/{b_pod}") as resp:
        assert resp.status == 200

    async def remade_with_new_b():
        body = await get(http, url)
        return body if body["state"] == "ready" and body["restarts"] == 1 and pod_ids(body)[0] != b_pod else None

    body = await wait_until(remade_with_new_b, 60, "the Flow to make B's part again")
    assert pod_ids(body)[1] == c_pod and body["pid"] != gateway_pid
    assert [p["id"] for p in await get(http, b.daemon.url + "/pods")] == [pod_ids(body)[0]]
    await wait_until(lambda: answers(http, a, body), 30, "the Flow to answer with B's new part")
    copied, own = await copied_and_own(http, a, flow["id"], c, next(p for p in body["remote"] if p["name"] == "upper_c"))
    assert copied == own  # C's part, followed anew after the gateway's restart: no line twice

    # A's daemon killed; C's part goes meanwhile: A finds B's by its record and makes C's again.
    b_pod = pod_ids(body)[0]
    a.daemon.stop(signal.SIGKILL)
    async with http.delete(f"{c.daemon.url}/pods/{c_pod}") as resp:
        assert resp.status == 200
    a.daemon.start()

    async def recovered():
        body = await get(http, url)
        return body if body["state"] == "ready" and pod_ids(body)[1] != c_pod else None

    body = await wait_until(recovered, 120, "the Flow back after A's restart, with C's part made again")
    assert pod_ids(body)[0] == b_pod
    assert [p["id"] for p in await get(http, c.daemon.url + "/pods")] == [pod_ids(body)[1]]
    await wait_until(lambda: answers(http, a, body), 30, "the Flow to answer after A's restart")

    async def b_copied_once() -> bool:  # B's part, followed again by A's next run: no line twice
        copied, own = await copied_and_own(http, a, flow["id"], b, next(p for p in body["remote"] if p["name"] == "upper_b"))
        # (its lines follow those of B's first Pod, killed above, under the same mark)
        return copied[-len(own):] == own and sum(b_pod in line for line in copied) == sum(b_pod in line for line in own) > 0

    await wait_until(b_copied_once, 30, "B's lines in the Flow's log once each after A's restart")
    await delete_and_check_nothing_left(http, a, flow, b, c)
