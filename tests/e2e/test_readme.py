"""README's "Use it" section, verbatim: its first command's daemon in one terminal (plain
`jinad` on 0.0.0.0, so auth is on and the token goes to ~/.jinad/token), then every command
of "Use it" in another, as the same user, with HOME a temporary folder. Each must exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

from tests.conftest import REPO

TIMEOUT = 300


def section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{argv[-1]}\n--- exit {done.returncode}; stderr (each command traced):\n{done.stderr}"
    return done


def test_use_it_works_verbatim_after_the_first_command_with_auth_on(daemon_factory, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    # The first command, `scripts/setup.sh && .venv/bin/jinad`: setup.sh has run (this is its venv).
    daemon = daemon_factory(home=user / ".jinad", host="0.0.0.0", env={})
    token = (user / ".jinad" / "token").read_text().strip()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/status", timeout=10)
        raise AssertionError("auth is off")
    except urllib.error.HTTPError as refused:
        assert refused.code == 401

    use_it = section("Use it")
    shell, python = blocks(use_it, "bash"), blocks(use_it, "python")
    assert len(shell) == 1 and len(python) == 1
    # Another terminal of the same user: nothing of jinad's set, the venv not yet on PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JINAD_", "XDG_"))}
    env.update(HOME=str(user), PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO))))
    out = run(["bash", "-e", "-u", "-o", "pipefail", "-x", "-c", shell[0]], env).stdout
    assert f"http://127.0.0.1:{daemon.port}/ui?token={token}" in out.splitlines(), out
    assert "upper executor ready" in out
    from_python = run([sys.executable, "-X", "dev", "-c", python[0]], env)
    assert "upper executor ready" in from_python.stdout
    assert "Unclosed" not in from_python.stderr

    assert token not in daemon.log_text(), "the daemon never logs its token"
    assert "jinad ui" in daemon.log_text()
