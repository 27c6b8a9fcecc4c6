import pytest

from jinad.errors import BadRequest
from jinad.uploads import safe_relpath
from tests.conftest import EXECUTORS, form


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


# A Flow request that can be refused is refused before anything runs: in process, no daemon needed.
@pytest.mark.parametrize(
    "body, status, word",
    [
        ({"workspace_id": "jworkspace-none", "filename": "flow.yml"}, 404, "jworkspace-none"),
        ({"filename": "flow.yml"}, 400, "workspace_id"),
        ({"WS": "", "filename": "missing.yml"}, 400, "missing.yml"),
        ({"WS": "", "filename": "bad.yml"}, 400, "YAML"),
        ({"WS": "", "filename": "nomod.yml"}, 400, "nowhere.py"),
        ({"WS": "", "filename": "flow.yml", "restart": "sometimes"}, 400, "restart"),
        ({"WS": "", "filename": "flow.yml", "colour": "red"}, 400, "colour"),
        ({"WS": "", "filename": "python.yml"}, 400, "YAML"),
    ],
)
async def test_bad_flow_requests_are_refused_before_anything_runs(client, body, status, word):
    upload = form(
        ("files", "flow.yml", EXECUTORS / "flow_http.yml"),
        ("files", "bad.yml", b"jtype: Flow\nexecutors: [\n"),
        ("files", "nomod.yml", b"jtype: Flow\nexecutors:\n  - uses: Upper\n    py_modules: nowhere.py\n"),
        ("files", "python.yml", b"!!python/object/apply:os.system ['true']\n"),
    )
    ws = await (await client.post("/workspaces", data=upload)).json()
    if "WS" in body:
        body = {"workspace_id": ws["id"], **{k: v for k, v in body.items() if k != "WS"}}
    resp = await client.post("/flows", json=body)
    assert resp.status == status
    assert word in (await resp.json())["message"]
    assert await (await client.get("/flows")).json() == []
