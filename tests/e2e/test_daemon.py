"""The real `jinad` process: started as a user would, driven over HTTP, restarted."""

import os
import signal
import subprocess

import pytest

from tests.conftest import JINAD, REPO, form


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
