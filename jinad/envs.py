"""Python environments for workspaces that bring a requirements.txt.

An environment is a virtualenv under `<home>/envs/<hash of the requirements>`, so workspaces
with the same requirements share one install. It sees the daemon's own packages (Jina among
them) through a `.pth` file, after its own, so nothing of Jina is installed twice and a
requirement may still override a package of the daemon. A `jina` launcher in its `bin/` runs
the Jina CLI with the environment's interpreter.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import site
import sys
from pathlib import Path

from .logs import Log
from .supervision import spawn

LAUNCHER = """#!{python}
import sys
from jina_cli import main
sys.exit(main())
"""


def requirements_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Environments:
    def __init__(self, home: Path, max_line: int) -> None:
        self.home = str(home)
        self.max_line = max_line  # pip's output lines are split as children's are
        self.root = home / "envs"
        self.pip_cache = home / "cache" / "pip"
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, env_hash: str) -> Path:
        return self.root / env_hash

    def ready(self, env_hash: str) -> bool:
        return (self.path(env_hash) / ".complete").exists()

    def child_env(self, env_hash: str, env: dict[str, str]) -> dict[str, str]:
        """`env` changed so a child runs in this environment."""
        bin_dir = str(self.path(env_hash) / "bin")
        return {**env, "VIRTUAL_ENV": str(self.path(env_hash)), "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}

    def jina(self, env_hash: str) -> str:
        return str(self.path(env_hash) / "bin" / "jina")

    async def build(self, env_hash: str, requirements: Path, log: Log, base_env: dict[str, str], owner: str) -> str | None:
        """Create the environment and install the requirements into it, output into `log`;
        None when done, else the reason it failed. A finished one is reused as it is."""
        async with self._locks.setdefault(env_hash, asyncio.Lock()):
            return await self._build(env_hash, requirements, log, base_env, owner)

    async def _build(self, env_hash: str, requirements: Path, log: Log, base_env: dict[str, str], owner: str) -> str | None:
        if self.ready(env_hash):
            log.append("stdout", [f"jinad: reusing the environment for these requirements ({env_hash})"])
            log.flush()
            return None
        target = self.path(env_hash)
        shutil.rmtree(target, ignore_errors=True)  # the remains of an interrupted build
        steps = [
            [sys.executable, "-m", "venv", "--without-pip", str(target)],
            [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "-r", str(requirements)],
        ]
        env = {**base_env, "PIP_CACHE_DIR": str(self.pip_cache), "PYTHONUNBUFFERED": "1"}
        for index, argv in enumerate(steps):
            log.append("stdout", ["jinad: " + " ".join(argv)])
            log.flush()
            child = await spawn(argv, requirements.parent, env, log, self.max_line, object_id=owner, home=self.home)
            try:
                code, _ = await child.wait(grace=5.0)
            except asyncio.CancelledError:  # the workspace was deleted or re-uploaded meanwhile
                await child.stop(grace=5.0)
                shutil.rmtree(target, ignore_errors=True)
                raise
            if code != 0:
                shutil.rmtree(target, ignore_errors=True)
                tail = [entry.line for entry in log.tail(5)]
                return f"{'pip install' if index else 'creating the virtualenv'} failed with exit code {code}: {' / '.join(tail)}"
            if index == 0:
                self._link_daemon_packages(target)
        (target / "bin" / "jina").write_text(LAUNCHER.format(python=target / "bin" / "python"))
        (target / "bin" / "jina").chmod(0o755)
        (target / ".complete").touch()
        return None

    @staticmethod
    def _link_daemon_packages(target: Path) -> None:
        """Let the new environment import the daemon's packages (Jina, and pip to install with)."""
        purelib = next(target.glob("lib/python*/site-packages"))
        (purelib / "_jinad_daemon_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    def remove(self, env_hash: str) -> None:
        shutil.rmtree(self.path(env_hash), ignore_errors=True)
