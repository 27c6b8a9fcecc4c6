import pytest

from jinad.app import create_app
from tests.conftest import form


@pytest.fixture
async def limited(aiohttp_client, config):
    limits = dict(max_upload_files=3, max_workspace_bytes=100, max_upload_bytes=10_000, max_json_bytes=1000)
    return await aiohttp_client(create_app(config.replace(**limits)))


async def test_too_many_files_is_413(limited):
    resp = await limited.post("/workspaces", data=form(*[("files", f"f{i}", b"1") for i in range(4)]))
    assert resp.status == 413
    assert "3 files" in (await resp.json())["message"]


async def test_workspace_total_size_is_bounded_across_uploads(limited):
    ws = await (await limited.post("/workspaces", data=form(("files", "a", b"x" * 60)))).json()
    resp = await limited.post(f"/workspaces/{ws['id']}/files", data=form(("files", "b", b"y" * 60)))
    assert resp.status == 413
    assert "room left in the workspace" in (await resp.json())["message"]
    ws_after = await (await limited.get(f"/workspaces/{ws['id']}")).json()
    assert ws_after["files"] == [{"path": "a", "size": 60}]


async def test_large_json_body_is_413(limited):
    resp = await limited.post("/peas", json={"workspace_id": "x" * 2000})
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


@pytest.mark.parametrize("body", [b"[1, 2", b"[]", b'"text"'])
async def test_json_that_is_not_an_object_is_400(client, body):
    resp = await client.post("/flows", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_request"
