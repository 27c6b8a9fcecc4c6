"""Faults: kill -9 of the daemon at bad moments, unruly children, a full disk."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import psutil
import pytest

from tests.conftest import children_of_home, form, wait_until
from tests.e2e.helpers import CHATTY, UNRULY, UPPER, alive, fill, in_state, read_stream, start_chatty, start_pea, tree_pids


async def get_json(http, url: str):
    async with http.get(url) as resp:
        return await resp.json()


async def test_kill9_during_an_upload_keeps_nothing_of_it(http, daemon):
    async def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n'
        for _ in range(400):
            yield b"z" * 65536
            await asyncio.sleep(0.01)
        yield b"\r\n--xyz--\r\n"

    upload = asyncio.create_task(http.post(daemon.url + "/workspaces", data=body(),
                                           headers={"Content-Type": "multipart/form-data; boundary=xyz"}))
    staging = daemon.home / "staging"
    await wait_until(lambda: any(p.is_file() for p in staging.rglob("*")), 30, "the upload to reach the disk")
    daemon.stop(signal.SIGKILL)
    with pytest.raises(Exception):
        await upload
    daemon.start()
    assert await get_json(http, daemon.url + "/workspaces") == []
    assert list(staging.iterdir()) == [] and list((daemon.home / "workspaces").iterdir()) == []


async def test_kill9_while_an_object_starts_then_it_comes_back_alone(http, daemon):
    pea = await start_pea(http, daemon, UPPER, {"uses": "Upper", "py_modules": ["upper.py"]}, query="?wait=false", expect=202)
    await wait_until(lambda: children_of_home(daemon.home), 30, "the child to exist")
    daemon.stop(signal.SIGKILL)
    daemon.start()
    back = await wait_until(lambda: in_state(http, daemon, "peas", pea["id"], "ready"), 90, "the pea to come back")
    assert {p.pid for p in children_of_home(daemon.home)} == set(tree_pids(back["pid"]))


async def test_kill9_while_streaming_then_resume_loses_and_repeats_nothing(http, daemon):
    # Live restore (issue 16): the pea runs on through the outage, its lines numbered on.
    pea = await start_chatty(http, daemon, 200_000)
    url = f"{daemon.url}/logs/{pea['id']}?tail=all"
    first, _ = await read_stream(http, url, stop_after=2000)
    daemon.stop(signal.SIGKILL)
    daemon.start()
    rest, _ = await read_stream(http, url, headers={"Last-Event-ID": str(first[-1]["seq"])}, until_line="chatty done")
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    numbers = [int(m.group(1)) for e in first + rest if (m := CHATTY.match(e["line"]))]
    assert numbers == list(range(200_000))
    assert (await get_json(http, f"{daemon.url}/peas/{pea['id']}"))["pid"] == pea["pid"]


async def test_an_escaped_grandchild_is_ended_with_its_object(http, daemon):
    pea = await start_pea(http, daemon, UNRULY, {"uses": "Forker", "py_modules": ["unruly.py"]})
    async with http.get(f"{daemon.url}/logs/{pea['id']}?tail=all&follow=false") as resp:
        grandchild = int(re.search(r"forker grandchild (\d+)", await resp.text()).group(1))
    assert alive([grandchild]) and psutil.Process(grandchild).pid not in tree_pids(pea["pid"])
    async with http.delete(f"{daemon.url}/peas/{pea['id']}") as resp:
        assert resp.status == 200
    assert alive([grandchild]) == []


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(http, daemon):
    pea = await start_pea(http, daemon, UNRULY, {"uses": "Stubborn", "py_modules": ["unruly.py"], "protocol": "grpc"})
    pids = tree_pids(pea["pid"])
    began = time.monotonic()
    async with http.delete(f"{daemon.url}/peas/{pea['id']}") as resp:
        assert resp.status == 200
    assert alive(pids) == []
    assert time.monotonic() - began < 30


async def test_a_full_disk_answers_507_keeps_earlier_records_and_recovers(http, daemon_factory, small_disk):
    daemon = daemon_factory(home=small_disk / "home")
    async with http.post(daemon.url + "/workspaces", data=form(("files", "keep.txt", b"precious"))) as resp:
        kept = (await resp.json())["id"]
    filler = fill(small_disk)
    async with http.post(daemon.url + "/workspaces", data=form(("files", "big.bin", b"b" * 3_000_000))) as resp:
        assert resp.status == 507
        assert (await resp.json())["error"] == "insufficient_storage"
    listed = await get_json(http, daemon.url + "/workspaces")
    assert [w["id"] for w in listed] == [kept]
    assert list((daemon.home / "staging").iterdir()) == []

    filler.unlink()
    async with http.post(daemon.url + "/workspaces", data=form(("files", "big.bin", b"b" * 3_000_000))) as resp:
        assert resp.status == 201
    async with http.get(f"{daemon.url}/workspaces/{kept}/files/keep.txt") as resp:
        assert await resp.read() == b"precious"


async def test_restart_policy_backs_off_then_gives_up(http, daemon_factory):
    daemon = daemon_factory("--restart-max-retries", "2")
    pea = await start_pea(http, daemon, UNRULY, {"uses": "Quitter", "py_modules": ["unruly.py"], "restart": "on-failure"})
    failed = await wait_until(lambda: in_state(http, daemon, "peas", pea["id"], "failed"), 120, "the policy to give up")
    assert failed["restarts"] == 2
    assert "gave up after 2 restarts" in failed["error"]
    assert children_of_home(daemon.home) == []
    async with http.get(f"{daemon.url}/logs/{pea['id']}?tail=all&follow=false", headers={"Accept": "text/event-stream"}) as resp:
        text = await resp.text()
    assert text.count('"state": "exited"') == 3 and text.count('"state": "ready"') == 3


async def test_an_object_that_cannot_start_again_after_a_restart_is_failed_and_the_daemon_runs(http, daemon):
    pea = await start_pea(http, daemon, UPPER, {"uses": "Upper", "py_modules": ["upper.py"]})
    ws = pea["workspace_id"]
    daemon.stop(signal.SIGTERM)  # the pea is `stopped`: to be started again
    (daemon.home / "state" / "workspaces" / f"{ws}.json").unlink()  # its workspace is lost meanwhile
    daemon.start()
    failed = await wait_until(lambda: in_state(http, daemon, "peas", pea["id"], "failed"), 30, "the pea to be failed")
    assert "could not start it again" in failed["error"] and ws in failed["error"]
    async with http.get(daemon.url + "/status") as resp:
        assert resp.status == 200
    assert not children_of_home(daemon.home)
