"""`SyncClient` against a real daemon: from plain code, and from a thread that already runs an
event loop (as a Jupyter notebook does)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
import threading

import pytest

from jinad.client.api import JinadError
from jinad.client.sync import SyncClient
from tests.e2e.helpers import make_folder


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jinad-sync-client"]


def test_upload_create_logs_and_delete_in_plain_code(daemon, tmp_path):
    with SyncClient(daemon.url) as jd:
        ws = jd.upload(make_folder(tmp_path / "ws", "upper.py"))
        assert [f["path"] for f in ws["files"]] == ["upper.py"]
        pea = jd.create("pea", workspace_id=ws["id"], uses="Upper", py_modules=["upper.py"])
        assert pea["state"] == "ready"
        lines = [entry["line"] for entry in jd.logs(pea["id"], tail="all", follow=False) if entry["event"] == "log"]
        assert "upper executor ready" in lines
        assert jd.delete(pea["id"])["state"] == "stopped"
        with pytest.raises(JinadError) as refused:
            jd.get(pea["id"])
        assert refused.value.code == "not_found" and refused.value.status == 404
        jd.delete(ws["id"])
        assert jd.workspaces() == []
    assert client_threads() == []


async def test_calls_and_a_followed_log_from_inside_a_running_event_loop(daemon, tmp_path):
    assert asyncio.get_running_loop().is_running()  # as in a notebook cell
    with SyncClient(daemon.url) as jd:
        assert jd.status()["jina"]["version"] == importlib.metadata.version("jina")
        ws = jd.upload(make_folder(tmp_path / "ws", "chatty.py"))
        pea = jd.create("pea", workspace_id=ws["id"], uses="Chatty", py_modules=["chatty.py"], uses_with={"lines": 3})
        seen = []
        for entry in jd.logs(pea["id"], tail="all"):  # follows: it ends only because we leave
            seen.append(entry.get("line", ""))
            if seen[-1].startswith("chatty done"):
                break
        assert [line[:15] for line in seen if line.startswith("chatty 0")] == [f"chatty {i:08d}" for i in range(3)]
        assert jd.delete(ws["id"])["id"] == ws["id"]
        assert jd.list("pea") == []
    assert client_threads() == []


def test_a_client_never_closed_is_closed_at_exit_without_warnings(daemon):
    script = f"from jinad.client.sync import SyncClient\njd = SyncClient({daemon.url!r})\nprint(jd.status()['jinad']['port'])"
    done = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"{daemon.port}\n"
    assert done.stderr == "", "no 'Unclosed client session' (nor any other warning)"
