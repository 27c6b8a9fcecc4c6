import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from jinad.app import create_app
from tests.conftest import form


def home_of(config) -> Path:
    return config.home


def leftovers(config) -> list[str]:
    """Everything an upload could have left on disk: workspace folders and staging entries."""
    found = []
    for sub in ("workspaces", "staging"):
        folder = home_of(config) / sub
        if folder.exists():
            found += [p.name for p in folder.iterdir()]
    return found


def zip_bytes(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def tar_bytes(entries: dict[str, bytes], link: tuple[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = link[1]
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


async def upload(client, *parts, path="/workspaces"):
    return await client.post(path, data=form(*parts))


async def test_create_keeps_relative_paths_and_lists_them(client):
    resp = await upload(client, ("files", "flow.yml", b"jtype: Flow\n"), ("files", "src/enc.py", b"print(1)\n"))
    assert resp.status == 201
    ws = await resp.json()
    assert ws["id"].startswith("jworkspace-")
    assert ws["state"] == "ready"
    assert ws["files"] == [{"path": "flow.yml", "size": 12}, {"path": "src/enc.py", "size": 9}]
    assert ws["size"] == 21
    assert ws["created_at"].endswith("Z")
    listed = await (await client.get("/workspaces")).json()
    assert [w["id"] for w in listed] == [ws["id"]]
    assert (await (await client.get(f"/workspaces/{ws['id']}")).json()) == ws


async def test_empty_body_makes_an_empty_workspace(client):
    resp = await client.post("/workspaces")
    assert resp.status == 201
    assert (await resp.json())["files"] == []


async def test_download_returns_the_bytes(client):
    payload = bytes(range(256)) * 100
    ws = await (await upload(client, ("files", "data/blob.bin", payload))).json()
    resp = await client.get(f"/workspaces/{ws['id']}/files/data/blob.bin")
    assert resp.status == 200
    assert await resp.read() == payload
    missing = await client.get(f"/workspaces/{ws['id']}/files/data/none.bin")
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"


async def test_archives_are_unpacked(client):
    resp = await upload(
        client,
        ("files", "code.zip", zip_bytes({"pkg/a.py": b"A", "pkg/sub/b.py": b"BB"})),
        ("files", "data.tar.gz", tar_bytes({"data/x.txt": b"XXX"})),
    )
    assert resp.status == 201
    paths = {f["path"]: f["size"] for f in (await resp.json())["files"]}
    assert paths == {"pkg/a.py": 1, "pkg/sub/b.py": 2, "data/x.txt": 3}


@pytest.mark.parametrize(
    "name, body",
    [
        ("../escape.txt", b"x"),
        ("/etc/evil.txt", b"x"),
        ("a/../../evil.txt", b"x"),
        ("bad.zip", zip_bytes({"ok.txt": b"1", "../evil.txt": b"2"})),
        ("bad.zip", zip_bytes({"ok.txt": b"1"}, symlink="link")),
        ("bad.tar.gz", tar_bytes({"ok.txt": b"1", "/abs.txt": b"2"})),
        ("bad.tgz", tar_bytes({"ok.txt": b"1"}, link=("sym", tarfile.SYMTYPE))),
        ("bad.tar.gz", tar_bytes({"ok.txt": b"1"}, link=("hard", tarfile.LNKTYPE))),
        ("broken.zip", b"not a zip at all"),
    ],
)
async def test_escaping_or_broken_uploads_are_refused_and_leave_nothing(client, config, name, body):
    resp = await upload(client, ("files", "fine.txt", b"fine"), ("files", name, body))
    assert resp.status == 400
    error = await resp.json()
    assert error["error"] == "bad_request"
    assert error["message"]
    assert await (await client.get("/workspaces")).json() == []
    assert leftovers(config) == []


async def test_refused_addition_leaves_the_workspace_as_it_was(client, config):
    ws = await (await upload(client, ("files", "keep.txt", b"old"))).json()
    resp = await upload(client, ("files", "keep.txt", b"new"), ("files", "../x", b"x"), path=f"/workspaces/{ws['id']}/files")
    assert resp.status == 400
    assert await (await client.get(f"/workspaces/{ws['id']}/files/keep.txt")).read() == b"old"
    assert list((config.home / "staging").iterdir()) == []


async def test_adding_files_replaces_and_extends(client):
    ws = await (await upload(client, ("files", "a.txt", b"1"))).json()
    resp = await upload(client, ("files", "a.txt", b"22"), ("files", "b/c.txt", b"333"), path=f"/workspaces/{ws['id']}/files")
    assert resp.status == 200
    updated = await resp.json()
    assert updated["files"] == [{"path": "a.txt", "size": 2}, {"path": "b/c.txt", "size": 3}]
    assert updated["updated_at"] >= ws["updated_at"]
    assert (await upload(client, ("files", "x", b"x"), path="/workspaces/jworkspace-nope/files")).status == 404


async def test_file_and_folder_at_one_path_is_refused(client):
    ws = await (await upload(client, ("files", "a", b"1"))).json()
    resp = await upload(client, ("files", "a/b", b"2"), path=f"/workspaces/{ws['id']}/files")
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_request"


async def test_upload_over_the_limit_is_413_and_leaves_nothing(client, config):
    big = b"x" * (config.max_upload_bytes + 1)
    resp = await upload(client, ("files", "big.bin", big))
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"
    assert leftovers(config) == []


async def test_streamed_upload_over_the_limit_is_413(client, config):
    """No Content-Length to judge by: the limit is enforced while the body streams in."""

    async def chunks():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n'
        for _ in range(config.max_upload_bytes // 8192 + 2):
            yield b"y" * 8192
        yield b"\r\n--xyz--\r\n"

    resp = await client.post("/workspaces", data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert resp.status == 413
    assert leftovers(config) == []


async def test_archive_unpacking_past_the_limit_is_413(client, config):
    bomb = zip_bytes({"zeros.bin": b"\0" * (config.max_upload_bytes * 4)})
    assert len(bomb) < config.max_upload_bytes
    resp = await upload(client, ("files", "bomb.zip", bomb))
    assert resp.status == 413
    assert leftovers(config) == []


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"Content-Type": "application/json"}, b"{}"),
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"garbage without boundary"),
    ],
)
async def test_non_multipart_or_malformed_bodies_are_400(client, config, headers, body):
    resp = await client.post("/workspaces", data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_request"
    assert leftovers(config) == []


async def test_unexpected_form_field_is_400(client):
    resp = await client.post("/workspaces", data=form(("other", "x.txt", b"1")))
    assert resp.status == 400
    assert "other" in (await resp.json())["message"]


async def test_download_cannot_leave_the_workspace(client, config):
    ws = await (await upload(client, ("files", "a.txt", b"1"))).json()
    files = config.home / "workspaces" / ws["id"] / "files"
    (files / "link").symlink_to("/etc/hostname")  # as a child could make at run time
    assert (await client.get(f"/workspaces/{ws['id']}/files/link")).status == 404
    assert (await client.get(f"/workspaces/{ws['id']}/files/..%2F..%2Fstate")).status in (400, 404)


async def test_delete_removes_record_and_files(client, config):
    ws = await (await upload(client, ("files", "a.txt", b"1"))).json()
    resp = await client.delete(f"/workspaces/{ws['id']}")
    assert resp.status == 200
    assert (await resp.json())["id"] == ws["id"]
    assert (await client.get(f"/workspaces/{ws['id']}")).status == 404
    assert leftovers(config) == []
    assert (await client.delete(f"/workspaces/{ws['id']}")).status == 404


async def test_workspaces_survive_a_new_app_and_half_uploads_are_dropped(aiohttp_client, config):
    first = await aiohttp_client(create_app(config))
    ws = await (await upload(first, ("files", "a.txt", b"1"))).json()
    await first.close()
    # What a kill -9 mid-upload leaves: a staging folder, a workspace folder without a record,
    # a record being written.
    (config.home / "staging" / "jupload-dead").mkdir(parents=True)
    (config.home / "workspaces" / "jworkspace-half" / "files").mkdir(parents=True)
    (config.home / "state" / "workspaces" / ".jworkspace-half.json.partial").write_text('{"id": "jwork')
    second = await aiohttp_client(create_app(config))
    listed = await (await second.get("/workspaces")).json()
    assert [w["id"] for w in listed] == [ws["id"]]
    assert listed[0]["files"] == [{"path": "a.txt", "size": 1}]
    assert sorted(leftovers(config)) == [ws["id"]]
    assert json.loads((config.home / "state" / "workspaces" / f"{ws['id']}.json").read_text())["id"] == ws["id"]
