"""Daemon URLs as --host, contexts, remote_tokens and a Flow YAML's `jinad:` take them."""

import pytest

from jinad.urls import daemon_url


@pytest.mark.parametrize("given, url", [("b:8000", "http://b:8000"), ("HTTP://b:8000/", "http://b:8000"),
                                        ("https://[::1]:9000", "https://[::1]:9000")])
def test_a_daemon_url_is_written_one_way(given, url):
    assert daemon_url(given) == url


@pytest.mark.parametrize("given, words", [("http://", "not a daemon URL"), ("http://[::1", "not a daemon URL"),
                                          ("http://b:99999", "not a daemon URL"), ("ftp://b:1", "not a daemon URL"),
                                          ("http://user:pw@b:8000", "no user or password")])
def test_what_cannot_be_a_daemon_url_is_refused_and_a_password_never_repeated(given, words):
    with pytest.raises(ValueError, match=words) as refused:
        daemon_url(given)
    assert "pw" not in str(refused.value)
