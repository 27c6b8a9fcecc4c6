"""Regressions of an attack on a running daemon (hostile input, round 2): each refusal is a
clear JSON 4xx, never a 500, and leaves nothing behind."""

from __future__ import annotations

import io
import json
import stat
import zipfile

import pytest
from yarl import URL

from jinad.app import create_app
from jinad.store import Store
from tests.api.test_workspaces import leftovers, tar_bytes
from tests.conftest import form
from tests.hostile import folders_only_tar_gz, nested


async def new_workspace(client, *parts) -> str:
    resp = await client.post("/workspaces", data=form(*(parts or [("files", "a.py", b"")])))
    assert resp.status == 201
    return (await resp.json())["id"]


async def refused(resp, status: int = 400) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"] and body["message"]
    return body["message"]


async def test_deep_uses_with_is_400_and_registers_nothing(client):
    ws = await new_workspace(client)
    resp = await client.post("/peas", json={"workspace_id": ws, "uses": "Upper", "uses_with": nested(700)})
    assert "nests deeper" in await refused(resp)
    assert await (await client.get("/peas")).json() == []
    assert await (await client.delete(f"/workspaces/{ws}")).json()  # nothing holds it


async def test_a_body_of_brackets_is_400(client):
    resp = await client.post("/peas", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert "nests deeper" in await refused(resp)


async def test_deep_form_fields_of_a_flow_upload_are_400_and_leave_nothing(client, config):
    data = form(("flow", "flow.yml", b"jtype: Flow\n"), envs=json.dumps(nested(100)))
    assert "nests deeper" in await refused(await client.post("/flows", data=data))
    assert leftovers(config) == []


async def test_a_record_that_cannot_be_stored_refuses_the_object(client, config):
    """The object must not be known before its record is stored: a store that fails (as
    `asdict` of a deep spec once did) leaves no object behind that nobody could delete."""
    ws = await new_workspace(client, ("files", "upper.py", b""))
    store_save = Store.save

    def failing(self, collection, record):
        if collection == "objects":
            raise RecursionError("maximum recursion depth exceeded")
        return store_save(self, collection, record)

    Store.save = failing
    try:
        resp = await client.post("/peas", json={"workspace_id": ws, "uses": "Upper", "py_modules": ["upper.py"]})
    finally:
        Store.save = store_save
    assert resp.status == 500
    assert await (await client.get("/peas")).json() == []
    run = config.home / "run"
    assert not run.exists() or not any(run.iterdir())


async def test_folder_entries_count_against_the_file_limit(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace(max_upload_files=100)))
    resp = await client.post("/workspaces", data=form(("files", "dirs.tar.gz", folders_only_tar_gz(101))))
    assert "100 files" in await refused(resp, 413)
    assert leftovers(config) == []


def zip_with_mode(name: str, mode: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, b"x")
    return buf.getvalue()


@pytest.mark.parametrize("mode", [stat.S_IFCHR | 0o666, stat.S_IFIFO | 0o644, stat.S_IFBLK | 0o600, stat.S_IFSOCK | 0o600])
async def test_zip_devices_and_fifos_are_refused(client, config, mode):
    resp = await client.post("/workspaces", data=form(("files", "Evil.ZIP", zip_with_mode("dev", mode))))
    message = await refused(resp)
    assert "Evil.ZIP" in message and "link or device" in message
    assert leftovers(config) == []


async def test_zip_entry_count_is_checked_before_its_directory_is_read(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace(max_upload_files=5)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in range(6):
            zf.writestr(f"f{n}", b"")
    assert "5 files" in await refused(await client.post("/workspaces", data=form(("files", "many.zip", buf.getvalue()))), 413)


async def test_archive_errors_name_the_uploaded_archive(client):
    message = await refused(await client.post("/workspaces", data=form(("files", "chr.tar.gz", b"not a tar"))))
    assert "chr.tar.gz" in message and "1-" not in message
    message = await refused(await client.post("/workspaces", data=form(("files", "up.tgz", tar_bytes({"../x": b""})))))
    assert "up.tgz" in message


async def test_a_refused_addition_adds_none_of_its_files(client, config):
    ws = await new_workspace(client, ("files", "dir/keep.txt", b"k"))
    parts = [("files", f"new{n}.txt", b"n") for n in range(20)] + [("files", "dir", b"clash")]
    message = await refused(await client.post(f"/workspaces/{ws}/files", data=form(*parts)))
    assert "'dir'" in message
    files = (config.home / "workspaces" / ws / "files")
    assert sorted(p.name for p in files.iterdir()) == ["dir"]
    assert [f["path"] for f in (await (await client.get(f"/workspaces/{ws}")).json())["files"]] == ["dir/keep.txt"]


@pytest.mark.parametrize("name", ["../req.txt", "/etc/passwd", ".", "x" * 300])
async def test_a_bad_requirements_path_leaves_no_staging(client, config, name):
    resp = await client.post("/workspaces", params={"requirements": name}, data=form(("files", "a.txt", b"a" * 1000)))
    await refused(resp)
    assert leftovers(config) == []


@pytest.mark.parametrize("value", ["²", "①", "1" * 5000, "-1", "1.5", "0x1"])
@pytest.mark.parametrize("where", ["tail", "since", "Last-Event-ID"])
async def test_log_positions_that_are_not_plain_numbers_are_400(client, value, where):
    ws = await new_workspace(client)
    params, headers = ({}, {where: value}) if where == "Last-Event-ID" else ({where: value, "follow": "false"}, {})
    message = await refused(await client.get(f"/logs/{ws}", params=params, headers=headers))
    assert where in message


@pytest.mark.parametrize("name", [".", "./", "a/" + "n" * 256, "/".join(["d"] * 2100)])
async def test_upload_names_that_name_no_file_or_are_too_long_are_400(client, config, name):
    await refused(await client.post("/workspaces", data=form(("files", name, b"x"))))
    assert leftovers(config) == []


@pytest.mark.parametrize("path", [".", "./", "n" * 256])
async def test_download_names_that_name_no_file_are_400_and_say_download(client, path):
    ws = await new_workspace(client)
    # As sent (curl --path-as-is): clients otherwise drop dot segments.
    url = URL(f"{client.make_url('/')}workspaces/{ws}/files/{path}", encoded=True)
    message = await refused(await client.session.get(url))
    assert "upload" not in message


async def test_a_nested_multipart_part_is_400(client):
    body = (b'--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\nContent-Disposition: form-data; name="files"\r\n\r\n'
            b'--inner\r\nContent-Disposition: attachment; filename="a.txt"\r\n\r\nA\r\n--inner--\r\n'
            b'\r\n--outer--\r\n')
    resp = await client.post("/workspaces", data=body, headers={"Content-Type": "multipart/form-data; boundary=outer"})
    assert "multipart" in await refused(resp)


async def test_an_executor_name_that_is_not_a_string_is_400_and_the_upload_is_removed(client, config):
    flow = b"jtype: Flow\nexecutors:\n  - name: [1, 2]\n    uses: Upper\n"
    assert "name of executor 0" in await refused(await client.post("/flows", data=form(("flow", "flow.yml", flow))))
    assert leftovers(config) == [] and await (await client.get("/workspaces")).json() == []


@pytest.mark.parametrize("fields, word", [
    ({"envs": []}, "envs"),
    ({"restart": {}}, "restart"),
    ({"restart": []}, "restart"),
    ({"uses_with": []}, "uses_with"),
    ({"py_modules": {}}, "py_modules"),
    ({"timeout_s": float("nan")}, "timeout_s"),
    ({"timeout_s": float("inf")}, "timeout_s"),
    ({"owner": ""}, "owner"),
    ({"owner": 1}, "owner"),
    ({"owner": "x" * 257}, "owner"),
    ({"owner": "a\u0000b"}, "owner"),
])
async def test_falsy_values_of_the_wrong_type_are_refused_not_taken_as_absent(client, fields, word):
    ws = await new_workspace(client)
    body = json.dumps({"workspace_id": ws, "uses": "Upper", **fields})  # NaN and Infinity as Python writes them
    resp = await client.post("/peas", data=body, headers={"Content-Type": "application/json"})
    assert word in await refused(resp)
    assert await (await client.get("/peas")).json() == []


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
async def test_the_auth_scheme_is_case_insensitive(aiohttp_client, config, scheme):
    client = await aiohttp_client(create_app(config.replace(token="s3cret")))
    assert (await client.get("/status", headers={"Authorization": f"{scheme} s3cret"})).status == 200
    assert (await client.get("/status", headers={"Authorization": f"{scheme} wrong"})).status == 401


@pytest.mark.parametrize("record", [
    {"id": "jpea-bogus", "kind": "pea"},
    {"id": "jpea-bogus", "kind": "pea", "workspace_id": "w", "spec": [], "envs": {}, "restart": "no",
     "timeout_s": 1, "created_at": "now"},
    {"id": "jpea-bogus", "kind": "nope", "workspace_id": "w", "spec": {}, "envs": {}, "restart": "no",
     "timeout_s": 1, "created_at": "now"},
    {"id": "jpea-other", "kind": "pea"},
    ["not", "an", "object"],
])
async def test_a_malformed_object_record_is_set_aside_and_the_daemon_starts(aiohttp_client, config, record):
    objects = config.home / "state" / "objects"
    objects.mkdir(parents=True)
    (objects / "jpea-bogus.json").write_text(json.dumps(record))
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/")).status == 200
    assert await (await client.get("/peas")).json() == []
    assert (config.home / "state" / "corrupt" / "objects" / "jpea-bogus.json").exists()
    assert not (objects / "jpea-bogus.json").exists()


async def test_a_malformed_workspace_record_is_set_aside_and_its_files_are_kept(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    ws = await new_workspace(client, ("files", "precious.txt", b"data"))
    await client.close()
    (config.home / "state" / "workspaces" / f"{ws}.json").write_text('{"id": "%s", "created_at": 5}' % ws)
    client = await aiohttp_client(create_app(config))
    assert await (await client.get("/workspaces")).json() == []
    assert (config.home / "workspaces" / ws / "files" / "precious.txt").read_bytes() == b"data"
    assert (config.home / "state" / "corrupt" / "workspaces" / f"{ws}.json").exists()


# ---- round 2b: what an outsider's attack on the fixed daemon still found ----------------------

async def test_a_record_nested_past_the_parser_is_set_aside(aiohttp_client, config):
    objects = config.home / "state" / "objects"
    objects.mkdir(parents=True)
    (objects / "jpea-deep.json").write_text("[" * 100_000 + "]" * 100_000)
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/")).status == 200
    assert (config.home / "state" / "corrupt" / "objects" / "jpea-deep.json").exists()


@pytest.mark.parametrize("record_fields", [
    {"kind": "flow"},                        # a pea's id on a flow's record
    {"ports": {"executor": 70000}},          # no such port
    {"timeout_s": 1e309},                    # written as Infinity
])
async def test_records_the_daemon_cannot_run_are_set_aside(aiohttp_client, config, record_fields):
    record = {"id": "jpea-odd", "kind": "pea", "workspace_id": "jworkspace-x", "spec": {}, "envs": {}, "restart": "no",
              "timeout_s": 5, "created_at": "now", "state": "stopped", **record_fields}
    objects = config.home / "state" / "objects"
    objects.mkdir(parents=True)
    (objects / "jpea-odd.json").write_text(json.dumps(record))
    client = await aiohttp_client(create_app(config))
    assert await (await client.get("/peas")).json() == [] and await (await client.get("/flows")).json() == []
    assert (config.home / "state" / "corrupt" / "objects" / "jpea-odd.json").exists()


async def test_a_workspace_record_without_its_folder_is_set_aside(aiohttp_client, config):
    workspaces = config.home / "state" / "workspaces"
    workspaces.mkdir(parents=True)
    (workspaces / "jworkspace-gone.json").write_text(json.dumps({"id": "jworkspace-gone", "created_at": "t", "updated_at": "t"}))
    client = await aiohttp_client(create_app(config))
    assert (await (await client.get("/status")).json())["workspaces"] == 0


@pytest.mark.parametrize("body", [{"timeout_s": 10 ** 400}, {"workspace_id": 1}, {"uses": "--help"}, {"uses": " "}])
async def test_values_that_would_fail_later_are_400_now(client, body):
    ws = await new_workspace(client)
    resp = await client.post("/peas", json={"workspace_id": ws, "uses": "Upper", **body})
    await refused(resp)
    assert await (await client.get("/peas")).json() == []


@pytest.mark.parametrize("flow, word", [
    (b"executors:\n  - {name: u, uses: X, env: {JINAD_OBJECT_ID: fake}}\n", "JINAD_"),
    (b"with: {env: {JINAD_HOME: /x}}\nexecutors:\n  - {name: u, uses: X}\n", "JINAD_"),
    (b"executors:\n  - {name: a, uses: X}\n  - {name: a, uses: X}\n", "two executors"),
    (b"executors:\n" + b"  " + b"[" * 2000 + b"]" * 2000 + b"\n", "nests deeper"),
])
async def test_flow_yamls_that_would_misbehave_are_400(client, config, flow, word):
    assert word in await refused(await client.post("/flows", data=form(("flow", "flow.yml", flow))))
    assert leftovers(config) == []


async def test_an_absolute_name_is_refused_however_it_is_quoted(client, config):
    body = b'--b\r\nContent-Disposition: form-data; name="files"; filename="/etc/x"\r\n\r\nA\r\n--b--\r\n'
    resp = await client.post("/workspaces", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert "absolute" in await refused(resp)
    assert leftovers(config) == []


async def test_a_body_that_is_not_the_gzip_it_says_is_400(client):
    resp = await client.post("/peas", data=b"not gzip", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert "malformed request" in await refused(resp)


async def test_a_form_field_that_is_not_text_is_400(client, config):
    body = (b'--b\r\nContent-Disposition: form-data; name="flow"; filename="f.yml"\r\n\r\njtype: Flow\r\n'
            b'--b\r\nContent-Disposition: form-data; name="restart"\r\n\r\n\xff\r\n--b--\r\n')
    resp = await client.post("/flows", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert "restart" in await refused(resp)
    assert leftovers(config) == []


async def test_a_deep_path_is_400_not_a_500_from_the_disk(client, config):
    name = "/".join(["d"] * 600) + "/f"  # within 4096 bytes, past what a workspace path may be
    await refused(await client.post("/workspaces", data=form(("files", name, b"x"))))
    assert leftovers(config) == []


async def test_replacing_files_counts_the_bytes_they_free(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace(max_workspace_bytes=2000)))
    ws = await new_workspace(client, *[("files", f"f{n}", b"x" * 600) for n in range(3)])
    resp = await client.post(f"/workspaces/{ws}/files", data=form(("files", "f0", b"y" * 300)))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["size"] == 1500
    resp = await client.post(f"/workspaces/{ws}/files", data=form(("files", "new", b"z" * 600)))
    assert "room left" in await refused(resp, 413)


@pytest.mark.parametrize("header", ["Bearer  s3cret", "bearer   s3cret"])
async def test_more_than_one_space_after_the_scheme_is_fine(aiohttp_client, config, header):
    client = await aiohttp_client(create_app(config.replace(token="s3cret")))
    assert (await client.get("/status", headers={"Authorization": header})).status == 200
