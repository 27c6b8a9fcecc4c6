import fcntl
import json
import os
import stat

import pytest

from jinad import local
from jinad.local import is_loopback, resolve_token, write_record
from jinad.config import Config


def test_loopback_needs_no_token(tmp_path):
    assert resolve_token(Config(host="127.0.0.1", home=str(tmp_path))).token == ""
    assert is_loopback("localhost") and is_loopback("127.0.0.9") and not is_loopback("0.0.0.0")


def test_off_loopback_a_token_is_made_kept_private_and_reused(tmp_path):
    config = Config(host="0.0.0.0", home=str(tmp_path))
    token = resolve_token(config).token
    assert len(token) >= 32
    path = tmp_path / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_token(config).token == token


def test_given_token_or_no_auth_are_kept(tmp_path):
    assert resolve_token(Config(host="0.0.0.0", home=str(tmp_path), token="mine")).token == "mine"
    assert resolve_token(Config(host="0.0.0.0", home=str(tmp_path), no_auth=True)).token == ""
    assert not (tmp_path / "token").exists()


def test_the_record_gives_the_url_and_the_token_only_to_that_url_while_the_daemon_runs(tmp_path):
    config = resolve_token(Config(host="0.0.0.0", port_expose=8123, home=str(tmp_path)))
    write_record(config, token_from_file=True)  # with this process's pid
    assert local.find(tmp_path).token is None, "a live pid that does not hold the home's lock is not its daemon"
    lock = open(tmp_path / local.LOCK_FILE, "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the daemon does for its whole life
    found = local.find(tmp_path)
    assert found.url == "http://127.0.0.1:8123" and found.token == config.token
    assert found.serves("http://localhost:8123") and found.serves("http://127.0.0.1:8123/")
    assert not found.serves("http://127.0.0.1:8124") and not found.serves("http://10.255.255.1:8123")

    record = json.loads((tmp_path / local.RECORD_FILE).read_text())
    (tmp_path / local.RECORD_FILE).write_text(json.dumps({**record, "pid": 2 ** 22 + 1}))  # above pid_max: gone
    assert local.find(tmp_path).token is None, "never to whatever listens there after the daemon"
    write_record(config, token_from_file=False)  # a token given with --token is not the file's
    assert local.find(tmp_path).token is None
    lock.close()


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_a_token_file_without_a_token_gets_a_new_one_never_no_auth(tmp_path, content):
    (tmp_path / "token").write_text(content)
    config = resolve_token(Config(host="0.0.0.0", home=str(tmp_path)))
    assert len(config.token) > 30 and (tmp_path / "token").read_text() == config.token


def test_a_token_file_others_could_read_is_made_private_again(tmp_path):
    (tmp_path / "token").write_text("kept-token")
    os.chmod(tmp_path / "token", 0o644)
    assert resolve_token(Config(host="0.0.0.0", home=str(tmp_path))).token == "kept-token"
    assert stat.S_IMODE(os.stat(tmp_path / "token").st_mode) == 0o600


def test_no_record_or_a_bad_one_is_no_local_daemon(tmp_path):
    assert local.find(tmp_path) is None
    (tmp_path / local.RECORD_FILE).write_text("{not json")
    assert local.find(tmp_path) is None


def test_home_and_url_as_the_daemon_would_have_them(tmp_path):
    assert local.home_dir(None, {"JINAD_WORKSPACE": str(tmp_path)}) == tmp_path.resolve()
    assert local.home_dir(str(tmp_path / "x"), {"JINAD_WORKSPACE": "/elsewhere"}) == (tmp_path / "x").resolve()
    assert local.url_for("::", 8000) == "http://[::1]:8000" and local.url_for("10.0.0.5", 1) == "http://10.0.0.5:1"
