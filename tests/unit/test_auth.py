import stat

from jinad.api.auth import is_loopback, resolve_token
from jinad.config import Config


def test_loopback_needs_no_token(tmp_path):
    assert resolve_token(Config(host="127.0.0.1", workspace=str(tmp_path))).token == ""
    assert is_loopback("localhost") and is_loopback("127.0.0.9") and not is_loopback("0.0.0.0")


def test_off_loopback_a_token_is_made_kept_private_and_reused(tmp_path):
    config = Config(host="0.0.0.0", workspace=str(tmp_path))
    token = resolve_token(config).token
    assert len(token) >= 32
    path = tmp_path / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_token(config).token == token


def test_given_token_or_no_auth_are_kept(tmp_path):
    assert resolve_token(Config(host="0.0.0.0", workspace=str(tmp_path), token="mine")).token == "mine"
    assert resolve_token(Config(host="0.0.0.0", workspace=str(tmp_path), no_auth=True)).token == ""
    assert not (tmp_path / "token").exists()
