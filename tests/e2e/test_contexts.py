"""Contexts: daemons by name, as `docker context`; `jinad ui`."""

from __future__ import annotations

import json
import stat

from tests.e2e.helpers import ok, run_cli


async def test_two_daemons_with_different_tokens_by_name_without_flags(daemon_factory, tmp_path):
    one, two = daemon_factory("--token", "token-one"), daemon_factory("--token", "token-two")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert await ok(None, "context", "add", "one", one.url, "--token", "token-one", env=env) == "one\n"
    await ok(None, "context", "add", "two", f"127.0.0.1:{two.port}", "--token", "token-two", env=env)
    path = tmp_path / "config" / "jinad" / "contexts.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    await ok(None, "context", "use", "one", env=env)
    assert json.loads(await ok(None, "status", "--json", env=env))["jinad"]["port"] == one.port
    assert json.loads(await ok(None, "status", "--json", "--context", "two", env=env))["jinad"]["port"] == two.port
    on_two = {**env, "JINAD_CONTEXT": "two"}
    assert json.loads(await ok(None, "status", "--json", env=on_two))["jinad"]["port"] == two.port
    assert await ok(None, "ui", env=on_two) == f"{two.url}/ui?token=token-two\n"

    listed = await ok(None, "context", "ls", env=env)
    assert "token-" not in listed, "tokens are never printed by ls"
    assert [line.split()[:2] for line in listed.splitlines()[1:] if line.startswith("*")] == [["*", "one"]]
    await ok(None, "context", "rm", "two", env=env)
    gone = await run_cli(None, "ls", "--context", "two", env=env)
    assert gone.code == 2 and "no context 'two'" in gone.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
