import pytest

from jinad.errors import BadRequest
from jinad.uploads import safe_relpath
from tests.conftest import form


@pytest.mark.parametrize(
    "fields, word",
    [
        ({"uses": "Up\u0000per"}, "NUL"),
        ({"uses": "Upper", "py_modules": ["\ud9f7x.py"]}, "Unicode"),
        ({"uses": "Upper", "envs": {"A=B": "1"}}, "envs"),
        ({"uses": "Upper", "envs": {"A": "x\u0000y"}}, "NUL"),
    ],
)
async def test_text_the_os_cannot_take_is_400_before_anything_runs(client, fields, word):
    ws = await (await client.post("/workspaces", data=form(("files", "a.py", b"")))).json()
    resp = await client.post("/peas", json={"workspace_id": ws["id"], **fields})
    assert resp.status == 400
    assert word in (await resp.json())["message"]
    assert await (await client.get("/peas")).json() == []


@pytest.mark.parametrize("name", ["a\u0000b.txt", "\udcffname.txt"])
def test_upload_paths_the_os_cannot_take_are_refused(name):
    with pytest.raises(BadRequest):
        safe_relpath(name)
