"""The real `jinad` process: started as a user would, driven over HTTP, restarted."""

import json
import os
import signal
import subprocess
import urllib.request

import pytest

from tests.conftest import JINAD, REPO, form, wait_until


def folder_parts(root):
    return [("files", path.relative_to(root).as_posix(), path) for path in sorted(root.rglob("*")) if path.is_file()]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "flow.yml").write_text("jtype: Flow\n")
    (root / "src" / "enc.py").write_text("print('enc')\n")
    (root / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return root


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
async def test_uploaded_folder_survives_a_daemon_restart(daemon_factory, http, project, how):
    daemon = daemon_factory()
    async with http.get(daemon.url + "/") as resp:
        assert resp.status == 200 and await resp.json() == {}
    async with http.post(daemon.url + "/workspaces", data=form(*folder_parts(project))) as resp:
        assert resp.status == 201
        ws = await resp.json()
    assert [f["path"] for f in ws["files"]] == ["data.bin", "flow.yml", "src/enc.py"]

    daemon.stop(how)
    daemon.start()

    async with http.get(daemon.url + "/workspaces") as resp:
        assert [w["id"] for w in await resp.json()] == [ws["id"]]
    async with http.get(f"{daemon.url}/workspaces/{ws['id']}/files/data.bin") as resp:
        assert resp.status == 200
        assert await resp.read() == (project / "data.bin").read_bytes()
    async with http.get(f"{daemon.url}/workspaces/{ws['id']}/files/src/enc.py") as resp:
        assert await resp.read() == b"print('enc')\n"


async def test_sigterm_is_a_clean_exit(daemon):
    assert daemon.stop(signal.SIGTERM) == 0
    assert "jinad stopped" in daemon.log_text()


def test_second_daemon_on_the_same_home_is_refused(daemon):
    result = subprocess.run([str(JINAD), "--workspace", str(daemon.home), "--port-expose", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "another jinad" in result.stderr


def test_bad_setting_is_a_usage_error(tmp_path):
    result = subprocess.run([str(JINAD), "--workspace", str(tmp_path), "--port-range", "9"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "port_range" in result.stderr


async def test_port_0_is_any_free_port_and_the_record_names_the_one_taken(tmp_path):
    """The record said port 0, so `jinad status` and every local client could not find it."""
    proc = subprocess.Popen([str(JINAD), "--workspace", str(tmp_path), "--port-expose", "0", "--host", "127.0.0.1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        record = tmp_path / "daemon.json"
        await wait_until(record.is_file, timeout=60, what="the daemon's record")
        url = json.loads(record.read_text())["url"]
        assert not url.endswith(":0")
        with urllib.request.urlopen(url + "/", timeout=10) as resp:
            assert resp.read() == b"{}"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert f"listening on {url} " in proc.stderr.read()
