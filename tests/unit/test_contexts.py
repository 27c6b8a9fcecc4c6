"""Which daemon and token a client uses: flags, environment, current context, local daemon."""

import fcntl
import stat
from typing import Iterator

import pytest

from jinad.client.contexts import ContextError, Contexts, contexts_file, resolve
from jinad.config import Config
from jinad import local
from jinad.local import resolve_token, write_record

LOCAL_URL = "http://127.0.0.1:8123"


@pytest.fixture
def env(tmp_path) -> Iterator[dict[str, str]]:
    """A local daemon (this very process stands in for it) with a token in its home, and an empty
    contexts file."""
    home = tmp_path / "home"
    home.mkdir()
    write_record(resolve_token(Config(host="0.0.0.0", port_expose=8123, home=str(home))), token_from_file=True)
    with open(home / local.LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held as the daemon holds it
        yield {"JINAD_WORKSPACE": str(home), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def local_token(env) -> str:
    return (open(env["JINAD_WORKSPACE"] + "/token").read()).strip()


def book(env) -> Contexts:
    return Contexts.load(contexts_file(env))


def test_with_nothing_given_the_local_daemon_and_its_token(env):
    target = resolve(environ=env)
    assert (target.url, target.token) == (LOCAL_URL, local_token(env))
    assert target.token_from.endswith("/home/token")


def test_the_local_token_goes_only_to_the_local_daemon(env):
    assert resolve(host="http://localhost:8123", environ=env).token == local_token(env)
    assert resolve(host="http://127.0.0.1:9999", environ=env).token is None
    assert resolve(host="http://10.1.2.3:8123", environ=env).token is None


def test_flags_then_environment_then_current_context_then_local(env):
    contexts = book(env)
    contexts.add("a", "http://a:1", "ta")
    contexts.add("b", "b:2", None)
    contexts.use("a")
    assert (resolve(environ=env).url, resolve(environ=env).token) == ("http://a:1", "ta")
    on_b = {**env, "JINAD_CONTEXT": "b"}
    assert (resolve(environ=on_b).url, resolve(environ=on_b).token) == ("http://b:2", None)
    with_host = {**on_b, "JINAD_HOST": "http://c:3", "JINAD_TOKEN": "tc"}
    assert (resolve(environ=with_host).url, resolve(environ=with_host).token) == ("http://c:3", "tc")
    flagged = resolve(context="a", environ=with_host)
    assert (flagged.url, flagged.token) == ("http://a:1", "ta"), "a context given by flag beats the environment"
    assert resolve(host="http://d:4", token="td", environ=with_host).token == "td"
    assert resolve(context="local", environ=with_host).url == LOCAL_URL
    assert resolve(host="http://d:4", environ={**env}).token is None, "a context's token stays with its URL"
    with pytest.raises(ContextError):
        resolve(host="http://d:4", context="a", environ=env)
    with pytest.raises(ContextError, match="no context 'zz'"):
        resolve(context="zz", environ=env)


def test_use_local_and_rm_go_back_to_the_local_daemon(env):
    contexts = book(env)
    contexts.add("a", "http://a:1", None)
    contexts.use("a")
    contexts.use("local")
    assert resolve(environ=env).url == LOCAL_URL
    contexts.use("a")
    book(env).remove("a")
    assert book(env).current is None and resolve(environ=env).url == LOCAL_URL


def test_the_file_is_private_and_names_are_checked(env):
    contexts = book(env)
    contexts.add("prod", "http://p:8000", "secret")
    path = contexts_file(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert book(env).entries == {"prod": {"url": "http://p:8000", "token": "secret"}}
    for bad in ("local", "", "a b", "-x"):
        with pytest.raises(ContextError):
            contexts.add(bad, "http://p:8000", None)
    with pytest.raises(ContextError, match="exists"):
        contexts.add("prod", "http://q:8000", None)
    with pytest.raises(ValueError):
        contexts.add("other", "ftp://q", None)
    path.write_text("contexts: [1, 2]")
    with pytest.raises(ContextError, match="not a contexts file"):
        book(env)
