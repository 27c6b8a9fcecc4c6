"""Workspaces with a requirements.txt get their own environment (real pip, real PyPI)."""

from __future__ import annotations

import pytest

from tests.conftest import EXECUTORS, form, wait_until
from tests.e2e.helpers import ask_http, external_flow, read_stream

JOKES = ("files", "jokes.py", EXECUTORS / "jokes.py")
REQS = ("files", "requirements.txt", b"pyjokes==0.8.3\n")


async def upload(http, daemon, *parts, path="/workspaces", expect=201) -> dict:
    async with http.post(daemon.url + path, data=form(*parts)) as resp:
        assert resp.status == expect, await resp.text()
        return await resp.json()


async def settled(http, daemon, ws_id: str):
    async with http.get(f"{daemon.url}/workspaces/{ws_id}") as resp:
        ws = await resp.json()
    return ws if ws["state"] != "installing" else None


async def install_log(http, daemon, ws_id: str) -> list[str]:
    logs, others = await read_stream(http, f"{daemon.url}/logs/{ws_id}?tail=all")
    assert others[-1].event == "end"
    return [entry["line"] for entry in logs]


async def test_requirements_become_an_environment_the_executor_runs_in(http, daemon):
    ws = await upload(http, daemon, JOKES, REQS)
    assert ws["state"] == "installing"
    # Creating a Pea waits for the install, then runs with it.
    async with http.post(daemon.url + "/peas", json={"workspace_id": ws["id"], "uses": "Jokes", "py_modules": ["jokes.py"]}) as resp:
        assert resp.status == 201, await resp.text()
        pea = await resp.json()
    ready = await settled(http, daemon, ws["id"])
    assert ready["state"] == "ready" and ready["error"] is None
    lines = await install_log(http, daemon, ws["id"])
    assert any("Successfully installed pyjokes-0.8.3" in line for line in lines), lines[-5:]

    gateway = await external_flow(http, daemon, pea["ports"]["executor"])
    assert (await ask_http(http, gateway, "x")).startswith("pyjokes 0.8.3: ")

    # A second workspace with the same requirements shares the environment.
    other = await upload(http, daemon, JOKES, REQS)
    assert (await wait_until(lambda: settled(http, daemon, other["id"]), 120, "second install"))["state"] == "ready"
    assert any("reusing" in line for line in await install_log(http, daemon, other["id"]))
    envs = list((daemon.home / "envs").iterdir())
    assert len(envs) == 1

    # Unchanged requirements re-uploaded: no rebuild. Deleting both workspaces removes the env.
    again = await upload(http, daemon, REQS, path=f"/workspaces/{other['id']}/files", expect=200)
    assert again["state"] == "ready"
    for ws_id in (ws["id"], other["id"]):
        async with http.delete(f"{daemon.url}/workspaces/{ws_id}?force=true") as resp:
            assert resp.status == 200, await resp.text()
    assert not envs[0].exists()


async def test_a_requirement_that_does_not_exist_fails_with_pips_message(http, daemon):
    ws = await upload(http, daemon, JOKES, ("files", "requirements.txt", b"jinad-no-such-package-q7x==1.0\n"))
    failed = await wait_until(lambda: settled(http, daemon, ws["id"]), 180, "install to fail")
    assert failed["state"] == "failed"
    assert "No matching distribution" in failed["error"] or "jinad-no-such-package-q7x" in failed["error"]
    async with http.post(daemon.url + "/peas", json={"workspace_id": ws["id"], "uses": "Jokes", "py_modules": ["jokes.py"]}) as resp:
        assert resp.status == 409
        assert "failed to install" in (await resp.json())["message"]
    assert not any((daemon.home / "envs").iterdir())


async def test_objects_in_an_installing_workspace_409_without_wait(http, daemon):
    ws = await upload(http, daemon, JOKES, REQS)
    if ws["state"] != "installing":
        pytest.skip("the install finished before the request")
    async with http.post(daemon.url + "/peas?wait=false", json={"workspace_id": ws["id"], "uses": "Jokes", "py_modules": ["jokes.py"]}) as resp:
        assert resp.status == 409
        assert "still installing" in (await resp.json())["message"]
    await wait_until(lambda: settled(http, daemon, ws["id"]), 180, "install")
