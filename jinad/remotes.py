"""Executors of a Flow that run on other daemons (`jinad: http://HOST:PORT` in the Flow YAML).

For each, the workspace is uploaded to that daemon (once per content: a workspace already
there with the same files is reused), the executor is started there as a Pod, and the Flow
runs it as external. A part that fails rolls back every part made before it. Each part's
log is followed into the Flow's own log, marked with where it comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import ssl
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import aiohttp

from .client.api import Client, JinadError, folder_files
from .errors import FailedToStart
from .logs import Log
from .store import from_record
from .states import LIVE, UP, WorkspaceState

log = logging.getLogger(__name__)
STATE_TIMEOUT = aiohttp.ClientTimeout(total=10)  # asking a remote daemon how a part is, at a (re)start


def content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name, path in folder_files(folder):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@dataclasses.dataclass
class RemotePart:
    """An executor of a Flow that runs as a Pod on another daemon; stored in the Flow's record
    (`remote`) with these keys."""

    name: str  # the executor's name in the Flow
    jinad: str  # the daemon's URL
    workspace_id: str  # its workspace there
    content: str  # hash of the files uploaded into it
    pod_id: str
    host: str
    ports: list  # the Pod's executor ports: the Flow's external entry lists them all
    address: str

    @classmethod
    def from_record(cls, record: object) -> "RemotePart":
        """A part from its record; ValueError/TypeError for one of the wrong shape."""
        part = from_record(cls, record)
        if not all(isinstance(port, int) for port in part.ports):
            raise ValueError(f"ports {part.ports!r} of remote part {part.name!r} are not all numbers")
        return part

    @property
    def placed(self) -> tuple[str, str]:
        """(daemon, workspace id): where its files are."""
        return self.jinad, self.workspace_id


class Remotes:
    """Parts on other daemons: deploying, checking, removing and following them, and which
    workspace there holds which files (so the same files go up once)."""

    def __init__(self, tokens: dict[str, str], ssl_context: ssl.SSLContext | None = None) -> None:
        self.tokens = tokens
        # Always a context of its own: never the JINAD_TLS_* a Client would read from the environment.
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._clients: dict[str, Client] = {}
        # (daemon URL, content hash) -> workspace id there.
        self._workspaces: dict[tuple[str, str], str] = {}

    def client(self, url: str) -> Client:
        if url not in self._clients:
            # "": a daemon sends only the tokens it was given; False: never the JINAD_TLS_* of its environment
            self._clients[url] = Client(url, token=self.tokens.get(url, ""), ssl_context=self.ssl_context)
        return self._clients[url]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    def remember(self, parts: list[RemotePart]) -> None:
        """Parts a previous run made: their workspaces are reused for the same files."""
        for part in parts:
            self._workspaces[(part.jinad, part.content)] = part.workspace_id

    async def _workspace_on(self, url: str, files: Path, digest: str) -> str:
        """The id of a workspace with these files on that daemon, uploading them only if needed."""
        workspace_id = self._workspaces.get((url, digest))
        if workspace_id:
            with contextlib.suppress(JinadError):
                if (await self.client(url).workspace(workspace_id))["state"] != WorkspaceState.FAILED:
                    return workspace_id
        workspace_id = (await self.client(url).upload(files))["id"]
        self._workspaces[(url, digest)] = workspace_id
        return workspace_id

    async def deploy(self, needed: list[dict], files: Path, timeout_s: float) -> list[RemotePart]:
        """Start every needed executor on its daemon; roll all back and raise if one fails."""
        digest = await asyncio.to_thread(content_hash, files)
        made: list[RemotePart] = []
        try:
            for need in needed:
                url, name = need["jinad"], need["name"]
                try:
                    workspace_id = await self._workspace_on(url, files, digest)
                    pod = await self.client(url).create("pod", workspace_id=workspace_id, timeout_s=timeout_s, **need["pod"])
                except JinadError as exc:
                    raise FailedToStart(f"remote executor {name!r} on {url} failed: {exc.message}",
                                        remote=name, log_tail=exc.body.get("log_tail", [])) from None
                except aiohttp.ClientConnectorCertificateError as exc:
                    raise FailedToStart(f"remote executor {name!r}: the certificate of the daemon at {url} is not trusted "
                                        f"({exc.certificate_error}); give this daemon the CA that signed it with "
                                        f"--remote-tls-ca", remote=name, log_tail=[]) from None
                except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raise FailedToStart(f"remote executor {name!r}: cannot reach the daemon at {url} ({exc or type(exc).__name__})",
                                        remote=name, log_tail=[]) from None
                ports = [p for key, p in sorted(pod["ports"].items()) if key.startswith("executor")]
                made.append(RemotePart(name=name, jinad=url, workspace_id=workspace_id, content=digest, pod_id=pod["id"],
                                       host=urlsplit(url).hostname, ports=ports, address=pod["address"]))
        except BaseException:
            await self.remove(made, keep_workspaces=set())
            raise
        return made

    async def still_running(self, parts: list[RemotePart]) -> list[RemotePart]:
        """The parts whose Pods still run on their daemons. A part that does not (deleted,
        stopped, failed, exited) is deleted there, its workspace kept for the next start; a
        daemon that does not answer within STATE_TIMEOUT keeps its parts (the start will tell)."""
        states = await asyncio.gather(*(self._state_of(part) for part in parts))
        gone = [part for part, state in zip(parts, states) if state not in LIVE and state != "unknown"]
        for part, state in zip(parts, states):
            if part in gone:
                log.warning("remote executor %s on %s is %s; starting it again", part.name, part.jinad, state)
        await self.remove(gone, keep_workspaces={part.placed for part in gone})
        return [part for part in parts if part not in gone]

    async def _state_of(self, part: RemotePart) -> str:
        try:
            pod = await self.client(part.jinad).request("GET", f"/pods/{part.pod_id}", timeout=STATE_TIMEOUT)
        except JinadError as exc:
            return "missing" if exc.code == "not_found" else "unknown"
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return "unknown"
        return pod.get("state", "unknown") if isinstance(pod, dict) else "unknown"

    async def drop(self, parts: list[RemotePart], in_use: set[tuple[str, str]]) -> None:
        """Remove an object's parts for good: their workspaces too, but those `in_use` (as
        `RemotePart.placed`) by other objects."""
        await self.remove(parts, keep_workspaces=in_use)
        for part in parts:
            if part.placed not in in_use:
                self._workspaces.pop((part.jinad, part.content), None)

    async def remove(self, parts: list[RemotePart], keep_workspaces: set[tuple[str, str]]) -> None:
        """Delete the parts' Pods, and their workspaces unless another Flow still uses them.
        A daemon that cannot be reached is logged, not waited for."""
        for part in parts:
            client = self.client(part.jinad)
            try:
                with contextlib.suppress(JinadError):
                    await client.delete(part.pod_id)
                if part.placed not in keep_workspaces:
                    with contextlib.suppress(JinadError):
                        await client.delete_workspace(part.workspace_id, force=False)
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("could not remove %s on %s: %s", part.pod_id, part.jinad, exc)

    def follow_all(self, parts: list[RemotePart], sink: Log, on_end: Callable[[str], None]) -> list[asyncio.Task]:
        """A task per part that follows its log (see `follow`)."""
        return [asyncio.create_task(self.follow(part, sink, on_end)) for part in parts]

    async def follow(self, part: RemotePart, sink: Log, on_end: Callable[[str], None]) -> None:
        """Copy a remote part's log into the Flow's log until the part ends; then say why."""
        mark = f"[{part.name}@{urlsplit(part.jinad).netloc}] "
        reason = "its log stream ended"
        try:
            async for item in self.client(part.jinad).logs(part.pod_id, tail="all"):
                if item["event"] == "log":
                    sink.append(item["stream"], [mark + item["line"]])
                    sink.flush()
                elif item["event"] == "state" and item["state"] not in UP:
                    reason = f"it is {item['state']}"
        except (JinadError, ConnectionError) as exc:
            reason = f"its daemon cannot be reached ({exc})"
        on_end(f"remote executor {part.name!r} on {part.jinad} ended: {reason}")
