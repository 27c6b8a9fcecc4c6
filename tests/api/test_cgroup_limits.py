"""`limits` where the machine cannot enforce them: a clear 400, and `GET /status` says so."""


import pytest

from jinad import objects
from jinad.app import create_app
from jinad.cgroups import Cgroups
from tests.conftest import form


@pytest.fixture
async def no_cgroups_client(aiohttp_client, config, monkeypatch, tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)  # a /proc that shows no cgroup fs
    monkeypatch.setattr(objects, "Cgroups", lambda home: Cgroups(home, tmp_path / "proc"))
    return await aiohttp_client(create_app(config))


async def test_limits_that_cannot_be_enforced_are_400_and_status_says_why(no_cgroups_client):
    client = no_cgroups_client
    status = await (await client.get("/status")).json()
    assert status["limits"] == {"memory": False, "cpus": False, "pids": False}
    ws = await (await client.post("/workspaces", data=form(("files", "a.py", b"")))).json()
    resp = await client.post("/peas", json={"workspace_id": ws["id"], "uses": "Upper", "limits": {"memory": "1GiB"}})
    assert resp.status == 400
    message = (await resp.json())["message"]
    assert "cannot enforce limits on memory" in message and "GET /status" in message
    assert await (await client.get("/peas")).json() == []


async def test_status_lists_what_can_be_capped(client):
    status = await (await client.get("/status")).json()
    assert set(status["limits"]) == {"memory", "cpus", "pids"}
    assert all(isinstance(v, bool) for v in status["limits"].values())
