"""The image's HEALTHCHECK: healthy only when the daemon its home's record names answers `{}`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from jinad import healthcheck


class _Answer(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_healthy_when_the_recorded_daemon_answers_empty_json(tmp_path, monkeypatch, server):
    monkeypatch.setenv("JINAD_WORKSPACE", str(tmp_path))
    assert healthcheck.main() == 1  # no record yet: the daemon has not started listening
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "daemon.json").write_text(json.dumps({"url": url, "pid": 1, "token_file": False}))
    assert healthcheck.healthy() == (True, f"{url}/ answered {{}}")
    _Answer.body = b'{"error": "x"}'
    try:
        assert healthcheck.main() == 1
    finally:
        _Answer.body = b"{}"


def test_unhealthy_when_nothing_listens_there(tmp_path, monkeypatch):
    monkeypatch.setenv("JINAD_WORKSPACE", str(tmp_path))
    (tmp_path / "daemon.json").write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": 1, "token_file": False}))
    ok, why = healthcheck.healthy()
    assert not ok and why.startswith("http://127.0.0.1:1/:")
