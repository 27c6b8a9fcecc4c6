"""The local daemon: what a daemon keeps in its home for clients on the same machine, and how
they find it (as Docker's CLI finds its daemon's socket, with no password).

- `<home>/token`: made (mode 0600) when auth is on by default and no token was given, and
  kept across restarts. Only the daemon's user (and root) can read it: being able to read it
  is what lets a client in.
- `<home>/daemon.json`: the URL the daemon serves, its pid and whether its token is that
  file. A client sends the file's token only to that URL and only while that pid runs, so the
  token never goes to whatever listens on the port after the daemon is gone.

Shared by the daemon (which writes) and the client (which reads): no HTTP server code here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlsplit

from .urls import netloc

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)
DEFAULT_HOME = "~/.jinad"
HOME_VARIABLE = "JINAD_WORKSPACE"  # the daemon's `workspace` setting, as the environment gives it
TOKEN_FILE = "token"
RECORD_FILE = "daemon.json"
LOCK_FILE = "jinad.lock"  # held by the running daemon (see cli.lock_home)
DEFAULT_PORT = 8000
ALL_ADDRESSES = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    # An address is not looked up: a name would load the IDNA codec (~0.1 MB of an idle daemon).
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def resolve_token(config: Config) -> Config:
    """Auth on by default off loopback: with no token given (and no --no-auth), make one and
    keep it in the home with mode 0600, so it stays the same across restarts. A file that
    others may read is made 0600 again; one that holds no token gets a new one (an empty
    token would be no auth at all)."""
    if config.token or config.no_auth or is_loopback(config.host):
        return config
    path = config.home / TOKEN_FILE
    if path.exists() and os.stat(path).st_mode & 0o077:
        log.warning("%s could be read by other users; it is 0600 again", path)
        os.chmod(path, 0o600)
    token = path.read_text().strip() if path.exists() else ""
    if not token:
        if path.exists():
            log.warning("%s held no token; a new one is made", path)
        token = secrets.token_urlsafe(32)
        partial = path.with_name(f".{TOKEN_FILE}.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        os.replace(partial, path)
    return config.replace(token=token)


def url_for(host: str, port: int, tls: bool = False) -> str:
    """The URL a client on this machine reaches a daemon listening on host:port with."""
    if host in ALL_ADDRESSES:
        host = "::1" if host == "::" else "127.0.0.1"
    scheme = "https" if tls else "http"
    return f"{scheme}://{netloc(host, port)}"


def home_dir(given: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The local daemon's home as its own settings find it: given, else $JINAD_WORKSPACE, else ~/.jinad."""
    return Path(given or environ.get(HOME_VARIABLE) or DEFAULT_HOME).expanduser().resolve()


def write_record(config: Config, token_from_file: bool) -> None:
    """`<home>/daemon.json`, replaced atomically; called once the daemon listens."""
    record = {"url": url_for(config.host, config.port_expose, bool(config.tls_cert)), "pid": os.getpid(), "token_file": token_from_file}
    partial = config.home / f".{RECORD_FILE}.partial"
    partial.write_text(json.dumps(record))
    os.replace(partial, config.home / RECORD_FILE)


def _running(pid: object, home: Path) -> bool:
    """Does our user run this pid, and is it the daemon of this home: the process holding the
    home's lock (a pid alone may have been reused by anything since a `kill -9`)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:  # gone, or another user's
        return False
    return _holds_lock(pid, home / LOCK_FILE)


def _holds_lock(pid: int, lock: Path) -> bool:
    """Does `pid` hold the flock on this file? Read from /proc/locks, so the check takes no
    lock itself (a daemon starting at that moment would find its home locked)."""
    try:
        inode = os.stat(lock).st_ino
        with open("/proc/locks") as locks:
            rows = [line.split() for line in locks]
    except OSError:
        return False
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a blocked waiter's row has "->" after the number.
    return any(row[1] == "FLOCK" and row[4] == str(pid) and row[5].rsplit(":", 1)[-1] == str(inode)
               for row in rows if len(row) >= 6 and row[1] == "FLOCK")


@dataclass(frozen=True)
class LocalDaemon:
    """The daemon of a home on this machine: its URL, and its token when this user may read it."""

    home: Path
    url: str
    token: str | None

    @property
    def token_path(self) -> Path:
        return self.home / TOKEN_FILE

    def serves(self, url: str) -> bool:
        """Is `url` this daemon: its port, on a loopback address or the address it listens on?"""
        ours, theirs = urlsplit(self.url), urlsplit(url)
        try:
            same_port = (theirs.port or 80) == (ours.port or 80)
        except ValueError:
            return False
        host = theirs.hostname or ""
        return same_port and (host == ours.hostname or host == socket.gethostname() or is_loopback(host))


def find(home: Path) -> LocalDaemon | None:
    """The daemon that last ran with this home, from its record; None when there is none. Its
    token only while it still runs and when this user can read the file."""
    try:
        record = json.loads((home / RECORD_FILE).read_text())
        url = str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    token = None
    if record.get("token_file") and _running(record.get("pid"), home):
        try:
            token = (home / TOKEN_FILE).read_text().strip() or None
        except OSError:  # not this user's daemon, or the file is gone
            token = None
    return LocalDaemon(home, url, token)
