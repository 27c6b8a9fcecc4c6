"""Which daemon a client talks to, and with which token: flags, then the environment, then
the current context, then the local daemon (as `docker context` and kubeconfig do).

Contexts name daemons: `$XDG_CONFIG_HOME/jinad/contexts.yml` (default `~/.config/jinad/`),
mode 0600 since it holds tokens:

    current: prod
    contexts:
      prod: {url: "http://10.0.0.5:8000", token: "..."}
      lab: {url: "http://lab:8000"}

The name `local` is the local daemon (what is used with no context), so `jinad context use
local` goes back to it.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from .. import local, urls

LOCAL = "local"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DEFAULT_URL = local.url_for("127.0.0.1", local.DEFAULT_PORT)
TLS_FILES = ("tls_ca", "tls_cert", "tls_key")  # a context may keep these for its https:// URL
HOST_VARIABLE, TOKEN_VARIABLE, CONTEXT_VARIABLE = "JINAD_HOST", "JINAD_TOKEN", "JINAD_CONTEXT"


MAX_FILE_BYTES = 1024 * 1024  # a hand-edited or hostile file must not take the command's memory


class ContextError(ValueError):
    """A context that does not exist, a name that cannot be one, an unreadable file."""


def daemon_url(text: str) -> str:
    """`host:port` or a URL -> a daemon URL; ValueError when it cannot be one."""
    return urls.daemon_url(text, DEFAULT_URL)


def contexts_file(environ: Mapping[str, str] = os.environ) -> Path:
    config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config_home) / "jinad" / "contexts.yml"


@dataclass
class Contexts:
    """The contexts file, read whole and written whole (atomically, mode 0600)."""

    path: Path
    current: str | None
    entries: dict[str, dict]

    @classmethod
    def load(cls, path: Path) -> "Contexts":
        """The file as `context add` writes it; a file edited by hand is checked as strictly."""
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ContextError(f"{path} is larger than {MAX_FILE_BYTES} bytes; it cannot be a contexts file")
            doc = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            doc = {}
        except (OSError, yaml.YAMLError) as exc:
            raise ContextError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None
        entries = doc.get("contexts") if isinstance(doc, dict) else None
        shape = f"{path} is not a contexts file (current: NAME, contexts: {{NAME: {{url, token}}}})"
        if not isinstance(doc, dict) or not isinstance(entries or {}, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("url"), str) for e in (entries or {}).values()):
            raise ContextError(shape)
        for name, entry in (entries or {}).items():
            try:
                daemon_url(entry["url"])
            except ValueError as exc:
                raise ContextError(f"{path}: context {name!r}: {exc}") from None
        if entries and path.stat().st_mode & 0o077:
            print(f"jinad: warning: {path} holds tokens and others may read it; chmod 600 it", file=sys.stderr)
        return cls(path, doc.get("current") or None, dict(entries or {}))

    def get(self, name: str) -> dict:
        if name not in self.entries:
            known = ", ".join([LOCAL, *self.entries])
            raise ContextError(f"no context {name!r} (there are: {known}); add one with `jinad context add NAME URL`")
        return self.entries[name]

    def add(self, name: str, url: str, token: str | None, tls: Mapping[str, str | None] | None = None) -> None:
        """`tls`: any of TLS_FILES, kept as absolute paths (the files stay where they are)."""
        if not NAME.fullmatch(name) or name == LOCAL:
            raise ContextError(f"{name!r} cannot name a context: letters, digits, '.', '_' or '-', and not {LOCAL!r}")
        if name in self.entries:
            raise ContextError(f"context {name!r} exists; `jinad context rm {name}` first")
        files = {key: str(Path(path).expanduser().resolve()) for key, path in (tls or {}).items() if key in TLS_FILES and path}
        self.entries[name] = {"url": daemon_url(url), **({"token": token} if token else {}), **files}
        self.save()

    def use(self, name: str) -> None:
        if name != LOCAL:
            self.get(name)
        self.current = None if name == LOCAL else name
        self.save()

    def remove(self, name: str) -> None:
        self.get(name)
        del self.entries[name]
        if self.current == name:
            self.current = None
        self.save()

    def save(self) -> None:
        """Written to a new file made with mode 0600, then renamed over the old one: the tokens
        are never readable by others, not even for a moment."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"current": self.current, "contexts": self.entries}, f, sort_keys=False)
        os.replace(partial, self.path)


@dataclass(frozen=True)
class Target:
    """A daemon to talk to: its URL, the token to send, and where each came from (for messages)."""

    url: str
    token: str | None
    url_from: str
    token_from: str | None
    local: local.LocalDaemon | None  # the local daemon, when the URL is it
    tls: Mapping[str, str] = field(default_factory=dict)  # TLS files of the context the URL came from


def resolve(host: str | None = None, token: str | None = None, context: str | None = None, home: str | None = None,
            environ: Mapping[str, str] = os.environ) -> Target:
    """The daemon and token for these flags: flags, then the environment, then the current
    context, then the local daemon. A context's token goes only to its own URL and the local
    daemon's only to the local daemon; a token given by flag or environment goes to any."""
    if host and context:
        raise ContextError("give --host or --context, not both")
    contexts = functools.cache(lambda: Contexts.load(contexts_file(environ)))  # read only when asked for

    entry_used: dict = {}

    def pick() -> tuple[str | None, str, str | None, bool]:
        """(url or None for the local daemon, where it came from, its context's token, given by flag?)"""
        for url, url_origin, name, name_origin, by_flag in (
            (host, "--host", context, "--context", True),
            (environ.get(HOST_VARIABLE), f"${HOST_VARIABLE}", environ.get(CONTEXT_VARIABLE), f"${CONTEXT_VARIABLE}", False),
        ):
            if url:
                return daemon_url(url), url_origin, None, by_flag
            if name:
                entry = {} if name == LOCAL else contexts().get(name)
                entry_used.update(entry)
                return entry.get("url"), f"context {name} ({name_origin})", entry.get("token"), by_flag
        name = contexts().current
        if name:
            entry = contexts().get(name)
            entry_used.update(entry)
            return entry["url"], f"context {name}", entry.get("token"), False
        return None, "", None, False

    url, url_from, context_token, by_flag = pick()
    daemon = local.find(local.home_dir(home, environ))
    if url is None:
        url = daemon.url if daemon else DEFAULT_URL
        url_from = url_from or (f"the local daemon of {daemon.home}" if daemon else "the default")
    here = daemon if daemon and daemon.serves(url) else None
    candidates = [
        (token, "--token"),
        (context_token if by_flag else None, url_from),
        (environ.get(TOKEN_VARIABLE), f"${TOKEN_VARIABLE}"),
        (None if by_flag else context_token, url_from),
        (here.token if here else None, str(here.token_path) if here else ""),
    ]
    chosen, chosen_from = next(((t, origin) for t, origin in candidates if t), (None, None))
    return Target(url, chosen, url_from, chosen_from, here, {k: v for k, v in entry_used.items() if k in TLS_FILES})


def local_token(url: str, home: str | None = None) -> str | None:
    """The local daemon's token when `url` is the local daemon and this user can read it."""
    daemon = local.find(local.home_dir(home))
    return daemon.token if daemon and daemon.serves(url) else None
