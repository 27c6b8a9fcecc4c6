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
import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

import aiohttp

from .errors import FailedToStart
from .lazy import LazyModule
from .logs import Log
from .store import Store, from_record
from .states import LIVE, RemoteState, State, WorkspaceState

if TYPE_CHECKING:
    from .client.api import Client

# The REST client is loaded when a Flow first has a remote part: an idle daemon does not need it.
client_api = LazyModule("jinad.client.api")

log = logging.getLogger(__name__)
STATE_TIMEOUT = aiohttp.ClientTimeout(total=10)  # asking a remote daemon how a part is, at a (re)start
WATCH_TIMEOUT = aiohttp.ClientTimeout(total=2)  # asking it while the Flow runs: a cut shows within seconds
WATCH_INTERVAL_S = 1.0
WATCH_BACKOFF_MAX_S = 4.0  # between asks of a daemon that does not answer
UNREACHABLE_AFTER = 2  # asks in a row without an answer before the part is shown unreachable
FOLLOW_RETRY_S = 2.0  # before following a part's log again after its daemon could not be reached
ENDED = frozenset({RemoteState.MISSING, State.EXITED, State.FAILED})  # a part in these no longer serves its Flow
REMOVE_TIMEOUT = aiohttp.ClientTimeout(total=120)  # a delete of a part: it waits for the Pod's stop
COPIED = "remote_copied"  # per remote part, the last line of its log copied into its Flow's
LEFTOVERS = "remote_leftovers"  # records of parts a delete could not reach, removed once their daemon answers
LEFTOVER_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # between tries to remove one, the last repeated
LEFTOVER_TRIES = 3000  # about a day


def content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name, path in client_api.folder_files(folder):
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
    owner: str = ""  # the Pod's owner there, '<flow id>/<name>': finds it when its id is not known
    restarts: int = 0  # times its Flow started it again there after it ended

    def seen(self, pod: dict | None) -> dict:
        """The fields `parts` shows for it, from its Pod as its daemon shows it (None: the
        daemon does not answer)."""
        if pod is None:
            return {"state": RemoteState.UNREACHABLE, "pid": None, "restarts": self.restarts,
                    "error": f"remote executor {self.name!r} on {self.jinad} cannot be reached", "resources": None}
        error = f"{self.jinad} has no Pod {self.pod_id} any more" if pod["state"] == RemoteState.MISSING else pod.get("error")
        return {"state": pod["state"], "pid": pod.get("pid"), "restarts": self.restarts + (pod.get("restarts") or 0),
                "error": error, "resources": pod.get("resources")}

    @property
    def key(self) -> str:
        """What names it among parts left to remove: its Pod's id, else a digest of where and whose."""
        return self.pod_id or "owned-" + hashlib.sha256(f"{self.jinad} {self.owner}".encode()).hexdigest()[:16]

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


@contextlib.contextmanager
def failing_as_part(name: str, url: str):
    """A remote daemon's refusal, or its silence, as FailedToStart of the part `name` there."""
    try:
        yield
    except client_api.JinadError as exc:
        raise FailedToStart(f"remote executor {name!r} on {url} failed: {exc.message}",
                            remote=name, log_tail=exc.body.get("log_tail", [])) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise FailedToStart(f"remote executor {name!r}: the certificate of the daemon at {url} is not trusted "
                            f"({exc.certificate_error}); give this daemon the CA that signed it with "
                            f"--remote-tls-ca", remote=name, log_tail=[]) from None
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise FailedToStart(f"remote executor {name!r}: cannot reach the daemon at {url} ({client_api.network_reason(exc)})",
                            remote=name, log_tail=[]) from None


class Remotes:
    """Parts on other daemons: deploying, checking, removing and following them, and which
    workspace there holds which files (so the same files go up once)."""

    def __init__(self, tokens: dict[str, str], ssl_context: ssl.SSLContext | None = None, store: Store | None = None) -> None:
        self.tokens = tokens
        self.store = store  # where parts left to remove later are kept across restarts
        self._retries: set[asyncio.Task] = set()
        # pod id -> the last line of its log copied into its Flow's: followed anew (after a
        # restart of the Flow, or of this daemon: it is kept on disk too), a part's log goes on
        # from there, never twice.
        self._copied: dict[str, int] = {}
        # Always a context of its own: never the JINAD_TLS_* a Client would read from the environment.
        # Made on first use: loading the default CAs costs an idle daemon ~65 kB.
        self._ssl_context = ssl_context
        self._clients: dict[str, Client] = {}
        # (daemon URL, content hash) -> workspace id there.
        self._workspaces: dict[tuple[str, str], str] = {}

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def client(self, url: str) -> Client:
        if url not in self._clients:
            # "": a daemon sends only the tokens it was given; False: never the JINAD_TLS_* of its environment
            self._clients[url] = client_api.Client(url, token=self.tokens.get(url, ""), ssl_context=self.ssl_context)
        return self._clients[url]

    async def close(self) -> None:
        for task in self._retries:  # their records stay: the next start tries again
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
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
            with contextlib.suppress(client_api.JinadError):
                if (await self.client(url).workspace(workspace_id))["state"] != WorkspaceState.FAILED:
                    return workspace_id
        workspace_id = (await self.client(url).upload(files))["id"]
        self._workspaces[(url, digest)] = workspace_id
        return workspace_id

    async def deploy(self, needed: list[dict], files: Path, timeout_s: float, flow_id: str) -> list[RemotePart]:
        """Start every needed executor on its daemon; roll all back and raise if one fails. A
        Pod there that already runs this part of this Flow (made by a try whose answer was
        lost, or by a daemon killed before it stored it) is used rather than made twice."""
        digest = await asyncio.to_thread(content_hash, files)
        made: list[RemotePart] = []
        try:
            for need in needed:
                url, name = need["jinad"], need["name"]
                owner = f"{flow_id}/{name}"
                # Until its answer is in: a Pod its daemon may have made (the answer lost, the
                # daemon killed meanwhile) is found by its owner and removed with the rest.
                made.append(RemotePart(name=name, jinad=url, workspace_id="", content=digest, pod_id="",
                                       host=urlsplit(url).hostname, ports=[], address="", owner=owner))
                with failing_as_part(name, url):
                    made[-1].workspace_id = workspace_id = await self._workspace_on(url, files, digest)
                    pod = await self._owned_by(url, owner) or await self._create(url, owner, workspace_id, timeout_s, need["pod"])
                made[-1].ports = [p for key, p in sorted(pod["ports"].items()) if key.startswith("executor")]
                made[-1].pod_id, made[-1].address = pod["id"], pod["address"]
        except BaseException:
            await self.remove(made, keep_workspaces=set())
            raise
        return made

    async def _owned_by(self, url: str, owner: str) -> dict | None:
        """The live Pod on that daemon made for `owner`; one there that no longer runs is deleted."""
        found = None
        for pod in await self.client(url).list("pod"):
            if pod.get("owner") != owner:
                continue
            if pod["state"] in LIVE and found is None:
                found = pod
            else:
                with contextlib.suppress(client_api.JinadError):
                    await self.client(url).delete(pod["id"])
        if found:
            log.info("remote executor %s is already on %s as %s; using it", owner, url, found["id"])
        return found

    async def _create(self, url: str, owner: str, workspace_id: str, timeout_s: float, request: dict) -> dict:
        """Make the part's Pod there; when the answer is lost on the way, ask once whether it
        was made (its `owner` finds it) before saying the daemon cannot be reached."""
        try:
            return await self.client(url).create("pod", workspace_id=workspace_id, timeout_s=timeout_s, owner=owner, **request)
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError):
            with contextlib.suppress(OSError, aiohttp.ClientError, asyncio.TimeoutError, client_api.JinadError):
                if found := await self._owned_by(url, owner):
                    return found
            raise

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
        pod = await self._pod_of(part, STATE_TIMEOUT)
        return "unknown" if pod is None else pod["state"]

    async def _pod_of(self, part: RemotePart, timeout: aiohttp.ClientTimeout) -> dict | None:
        """The part's Pod as its daemon shows it (state `missing` when it has none), or None
        when the daemon does not answer."""
        try:
            pod = await self.client(part.jinad).request("GET", f"/pods/{part.pod_id}", timeout=timeout)
        except client_api.JinadError as exc:
            return {"state": RemoteState.MISSING} if exc.code == "not_found" else None
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        return pod if isinstance(pod, dict) and isinstance(pod.get("state"), str) else None

    async def restart(self, part: RemotePart) -> None:
        """Start the part's Pod again on its daemon: the same Pod, so on the same ports, which
        the Flow's gateway already lists. FailedToStart if it does not start there."""
        with failing_as_part(part.name, part.jinad):
            await self.client(part.jinad).request("POST", f"/pods/{part.pod_id}/restart", timeout=REMOVE_TIMEOUT)

    async def drop(self, parts: list[RemotePart], in_use: set[tuple[str, str]]) -> None:
        """Remove an object's parts for good: their workspaces too, but those `in_use` (as
        `RemotePart.placed`) by other objects."""
        await self.remove(parts, keep_workspaces=in_use)
        for part in parts:
            if part.placed not in in_use:
                self._workspaces.pop((part.jinad, part.content), None)

    async def remove(self, parts: list[RemotePart], keep_workspaces: set[tuple[str, str]]) -> None:
        """Delete the parts' Pods, and their workspaces unless another Flow still uses them.
        A daemon that cannot be reached is not waited for: the part is removed there once it
        answers again (`_remove_later`), also after a restart of this daemon."""
        for part in parts:
            self._copied.pop(part.pod_id, None)
            if position := self._position_file(part.pod_id):
                position.unlink(missing_ok=True)
            with_workspace = part.placed not in keep_workspaces
            try:
                await self._remove_one(part, with_workspace)
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("could not remove %s on %s (%s); trying again until it answers", part.key, part.jinad,
                            client_api.network_reason(exc))
                self._remove_later(part, with_workspace)

    async def _remove_one(self, part: RemotePart, with_workspace: bool) -> None:
        client = self.client(part.jinad)
        await client.request("GET", "/", timeout=WATCH_TIMEOUT)  # one that is cut off shows in seconds
        pods = [part.pod_id] if part.pod_id else [pod["id"] for pod in await client.list("pod") if pod.get("owner") == part.owner]
        for pod_id in pods:
            with contextlib.suppress(client_api.JinadError):  # gone already
                await client.request("DELETE", f"/pods/{pod_id}", timeout=REMOVE_TIMEOUT)
        if with_workspace and part.workspace_id:  # (a workspace used again is refused there)
            with contextlib.suppress(client_api.JinadError):
                await client.request("DELETE", f"/workspaces/{part.workspace_id}", timeout=REMOVE_TIMEOUT)

    def _remove_later(self, part: RemotePart, with_workspace: bool, stored: bool = False) -> None:
        """Try again with back-off, at most LEFTOVER_TRIES times; kept in the store until done."""
        if self.store is not None and not stored:
            try:
                self.store.save(LEFTOVERS, {"id": part.key, "part": dataclasses.asdict(part), "workspace": with_workspace})
            except OSError as exc:
                log.error("could not store %s as left to remove (%s); only this run will try", part.key, exc)

        async def retry() -> None:
            for attempt in range(LEFTOVER_TRIES):
                await asyncio.sleep(LEFTOVER_RETRY_S[min(attempt, len(LEFTOVER_RETRY_S) - 1)])
                try:
                    await self._remove_one(part, with_workspace)
                except (OSError, aiohttp.ClientError, asyncio.TimeoutError):
                    continue
                log.info("removed %s on %s, left by a delete that could not reach it", part.key, part.jinad)
                break
            else:
                log.error("gave up removing %s on %s after %d tries", part.key, part.jinad, LEFTOVER_TRIES)
            if self.store is not None:
                with contextlib.suppress(OSError):
                    self.store.delete(LEFTOVERS, part.key)

        task = asyncio.create_task(retry(), name=f"remove {part.key} on {part.jinad}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def remove_leftovers(self) -> None:
        """At start: remove the parts an earlier run's deletes could not reach."""
        if self.store is None:
            return
        for part, with_workspace in self.store.load_all(LEFTOVERS, lambda r: (RemotePart.from_record(r["part"]), bool(r["workspace"]))):
            self._remove_later(part, with_workspace, stored=True)

    def follow_all(self, parts: list[RemotePart], sink: Log, report: Callable[[RemotePart, dict], bool],
                   ended: Callable[[RemotePart, dict], bool]) -> list[asyncio.Task]:
        """Tasks that follow each part's log (see `follow`) and watch it (see `watch`)."""
        return [asyncio.create_task(job) for part in parts for job in (self.follow(part, sink), self.watch(part, report, ended))]

    async def watch(self, part: RemotePart, report: Callable[[RemotePart, dict], bool],
                    ended: Callable[[RemotePart, dict], bool]) -> None:
        """Ask the part's daemon how the part is while its Flow runs, and `report` it (as
        `RemotePart.seen`): at each answer, and after UNREACHABLE_AFTER asks in a row without
        one (then asked again with back-off). `ended` the Pod while it no longer runs there:
        the Flow's restart policy takes over, as for a part of its own. False from `report`,
        or True from `ended`: the Flow no longer runs, stop."""
        misses = 0
        while True:
            pod = await self._pod_of(part, WATCH_TIMEOUT)
            misses = 0 if pod is not None else misses + 1
            if (pod is not None or misses >= UNREACHABLE_AFTER) and not report(part, part.seen(pod)):
                return
            if pod is not None and pod["state"] in ENDED and ended(part, pod):
                return
            await asyncio.sleep(min(WATCH_INTERVAL_S * 2 ** max(misses - UNREACHABLE_AFTER, 0), WATCH_BACKOFF_MAX_S))

    async def follow(self, part: RemotePart, sink: Log) -> None:
        """Copy a remote part's log into the Flow's log, each line marked with where it comes
        from, until the part ends; after a cut the stream is taken up again where it stopped,
        so no line is lost or repeated (`watch` tells the Flow how the part is)."""
        mark = f"[{part.name}@{urlsplit(part.jinad).netloc}] "
        if part.pod_id not in self._copied:
            self._copied[part.pod_id] = self._copied_before(part.pod_id)
        while True:
            try:
                async for item in self.client(part.jinad).logs(part.pod_id, tail="all"):
                    if item["event"] == "log" and item["seq"] > self._copied[part.pod_id]:
                        self._copied[part.pod_id] = item["seq"]
                        sink.append(item["stream"], [mark + item["line"]])
                        sink.flush()
                        self._note_copied(part.pod_id, item["seq"])
                return
            except client_api.JinadError:  # the part is gone there
                return
            except ConnectionError:
                await asyncio.sleep(FOLLOW_RETRY_S)

    def _position_file(self, pod_id: str) -> Path | None:
        """Where the last line copied from that Pod's log is kept (an id its daemon gave, so
        only one of the shape ids have names a file)."""
        if self.store is None or not re.fullmatch(r"j[a-z]+-[0-9a-f]{1,32}", pod_id):
            return None
        return self.store.root / COPIED / pod_id

    def _copied_before(self, pod_id: str) -> int:
        """The last line of the part's log an earlier run of this daemon copied, or -1."""
        position = self._position_file(pod_id)
        try:
            return int(position.read_text()) if position else -1
        except (OSError, ValueError):  # none kept, or torn: its lines are copied again, not lost
            return -1

    def _note_copied(self, pod_id: str, seq: int) -> None:
        """Kept right after the line reached the Flow's log file: a daemon killed between the
        two copies that one line again at its next start, and loses none. Renamed into place,
        not fsynced: what a killed daemon needs, and a line costs no disk flush."""
        if not (position := self._position_file(pod_id)):
            return
        partial = position.with_name(f".{pod_id}")
        with contextlib.suppress(OSError):  # a full disk: this run still copies each line once
            position.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(str(seq))
            os.replace(partial, position)
