"""Workspaces: folders of uploaded files that Flows, Pods and Peas run in.

Layout under the daemon's home:
    workspaces/<id>/files/   the uploaded files (the children's working directory)
    workspaces/<id>/home/    HOME of the children, so Jina's caches stay per workspace
    staging/<upload>/        uploads in progress; moved into place only when complete
A workspace exists once its record is in the store; a folder without a record is the
remains of an interrupted upload and is removed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import AsyncIterable

from .config import Config
from .envs import Environments, requirements_hash
from .errors import BadRequest, Conflict, NotFound, TooLarge
from .ids import new_id, utc_now
from .logs import Log
from .states import WorkspaceState
from .store import Store, from_record, fsync_path
from .uploads import FilePart, receive, safe_relpath, sync_tree

log = logging.getLogger(__name__)
COLLECTION = "workspaces"


@dataclasses.dataclass
class Workspace:
    id: str
    created_at: str
    updated_at: str
    state: str = WorkspaceState.READY
    error: str | None = None
    requirements: str | None = None  # the requirements file, when not requirements.txt at the root
    env: str | None = None  # hash of the requirements its environment was built from
    # Derived from the folder, never stored: the disk is the truth about files.
    files: list[dict] = dataclasses.field(default_factory=list)

    def record(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "files"}

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "size": self.size}


def _workspace_from_record(record: dict) -> Workspace:
    ws = from_record(Workspace, record)
    if not ws.id.startswith("jworkspace-") or ws.state not in WorkspaceState.values() or ws.files:
        raise ValueError(f"id {ws.id!r} or state {ws.state!r} is not a workspace's, or it lists files (the folder is the truth)")
    return ws


def daemon_free_environ() -> dict[str, str]:
    """The daemon's environment without its own JINAD_* settings (the token among them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}


def _list_files(root: Path) -> list[dict]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            found.append({"path": path.relative_to(root).as_posix(), "size": path.stat().st_size})
    return found


def _clash(rel: Path, dest: Path) -> bool:
    """Would a file at `rel` clash with dest: a folder there, or a file where it needs a folder?"""
    target = dest / rel
    return target.is_dir() or any((dest / parent).is_file() for parent in rel.parents if parent != Path("."))


def _merge(staging: Path, dest: Path) -> None:
    """Move every staged file into dest, replacing files of the same path; all or nothing:
    every clash is looked for before the first file moves."""
    staged = [Path(folder, name).relative_to(staging) for folder, _, files in os.walk(staging) for name in files]
    for rel in staged:
        if _clash(rel, dest):
            raise BadRequest(f"{rel.as_posix()!r} clashes with a file or folder of the same name in the workspace")
    for rel in staged:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest / rel)
    fsync_path(dest)


class WorkspaceManager:
    def __init__(self, config: Config, store: Store) -> None:
        self.root = config.home / "workspaces"
        self.staging = config.home / "staging"
        self.store = store
        self.config = config
        self.envs = Environments(config.home, config.log_max_line_bytes)
        self._workspaces: dict[str, Workspace] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._logs: dict[str, Log] = {}
        self._installs: dict[str, asyncio.Task] = {}
        self._building: dict[str, str] = {}  # workspace id -> hash of the environment being built
        self._settled: dict[str, asyncio.Event] = {}

    def load(self) -> None:
        """Read the records back and remove what interrupted uploads left."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.root.mkdir(parents=True, exist_ok=True)
        def build(record: dict) -> Workspace:
            ws = _workspace_from_record(record)
            if not self.files_dir(ws.id).is_dir():
                raise ValueError(f"its folder {self.files_dir(ws.id)} is missing")
            return ws

        for ws in self.store.load_all(COLLECTION, build):
            ws.files = _list_files(self.files_dir(ws.id))
            self._workspaces[ws.id] = ws
        keep = self._workspaces.keys() | self.store.set_aside_ids(COLLECTION)
        for folder in self.root.iterdir():
            if folder.name not in keep:
                log.warning("removing %s: no record, left by an interrupted upload", folder)
                shutil.rmtree(folder, ignore_errors=True)

    def files_dir(self, workspace_id: str) -> Path:
        return self.root / workspace_id / "files"

    def home_dir(self, workspace_id: str) -> Path:
        return self.root / workspace_id / "home"

    def list(self) -> list[Workspace]:
        return list(self._workspaces.values())

    def get(self, workspace_id: str) -> Workspace:
        try:
            return self._workspaces[workspace_id]
        except KeyError:
            raise NotFound(f"no workspace {workspace_id!r} on this daemon") from None

    def count(self) -> int:
        return len(self._workspaces)

    def log_of(self, workspace_id: str) -> Log:
        """The workspace's install log."""
        self.get(workspace_id)
        if workspace_id not in self._logs:
            self._logs[workspace_id] = Log.from_config(self.config, workspace_id)
        return self._logs[workspace_id]

    def tend_logs(self) -> None:
        for install_log in self._logs.values():
            install_log.tend()

    def open_logs(self) -> dict[str, Log]:
        """The install logs opened so far, by workspace id."""
        return self._logs

    def is_settled(self, workspace_id: str) -> bool:
        ws = self._workspaces.get(workspace_id)
        return ws is None or ws.state != WorkspaceState.INSTALLING

    async def ready_for_objects(self, workspace_id: str, wait: bool) -> Workspace:
        """The workspace once its environment is ready; 409 when it failed, or is still
        installing and the caller does not wait."""
        ws = self.get(workspace_id)
        if ws.state == WorkspaceState.INSTALLING:
            if not wait:
                raise Conflict(f"workspace {workspace_id} is still installing its requirements; see GET /logs/{workspace_id}")
            await self._settled.setdefault(workspace_id, asyncio.Event()).wait()
            ws = self.get(workspace_id)
        if ws.state == WorkspaceState.FAILED:
            raise Conflict(f"workspace {workspace_id} failed to install its requirements: {ws.error}")
        return ws

    def child_env(self, workspace_id: str, envs: dict[str, str]) -> dict[str, str]:
        """The environment of a child in this workspace, with the user's `envs`, in the
        workspace's own Python environment if it has one."""
        env = daemon_free_environ()  # no token leaks to user code
        env.update(
            PYTHONUNBUFFERED="1",  # executors' print() reaches the log at once
            JINA_LOG_NO_COLOR="1",
            COLUMNS="200",
            HOME=str(self.home_dir(workspace_id)),
            # Jina picks the ports of replicas, heads and monitoring in its own part of the range.
            JINA_RANDOM_PORT_MIN=str(self.config.jina_ports.start),
            JINA_RANDOM_PORT_MAX=str(self.config.jina_ports.stop - 1),
        )
        env.update(envs)
        ws = self.get(workspace_id)
        return self.envs.child_env(ws.env, env) if ws.env else env

    def jina(self, workspace_id: str, default: str) -> str:
        ws = self.get(workspace_id)
        return self.envs.jina(ws.env) if ws.env else default

    def _requirements_file(self, ws: Workspace) -> Path | None:
        path = self.files_dir(ws.id) / (ws.requirements or "requirements.txt")
        return path if path.is_file() else None

    def _install_if_changed(self, ws: Workspace) -> None:
        """Build the environment in the background when the requirements are new or changed."""
        requirements = self._requirements_file(ws)
        env_hash = requirements_hash(requirements) if requirements else None
        if env_hash == ws.env and ws.state != WorkspaceState.INSTALLING:
            return
        if env_hash is None:
            self._set_env(ws, None)
            return
        if (task := self._installs.get(ws.id)) is not None:
            task.cancel()
        ws.state, ws.error = WorkspaceState.INSTALLING, None
        self._settled[ws.id] = asyncio.Event()
        self.store.save(COLLECTION, ws.record())
        self._building[ws.id] = env_hash
        self._installs[ws.id] = asyncio.create_task(self._install(ws, env_hash, requirements))

    async def _install(self, ws: Workspace, env_hash: str, requirements: Path) -> None:
        try:
            reason = await self.envs.build(env_hash, requirements, self.log_of(ws.id), daemon_free_environ(), owner=ws.id)
        finally:
            self._building.pop(ws.id, None)
        if reason is None:
            self._set_env(ws, env_hash)
        else:
            ws.state, ws.error = WorkspaceState.FAILED, reason
            self.store.save(COLLECTION, ws.record())
        self._installs.pop(ws.id, None)
        self._settled[ws.id].set()
        self.log_of(ws.id).note_state(ws.state, None)  # ends the install log's followers
        log.info("workspace %s: environment %s", ws.id, "ready" if reason is None else f"failed: {reason}")

    def _set_env(self, ws: Workspace, env_hash: str | None) -> None:
        previous = ws.env
        ws.env, ws.state, ws.error = env_hash, WorkspaceState.READY, None
        self.store.save(COLLECTION, ws.record())
        self._drop_env_if_unused(previous)

    def _drop_env_if_unused(self, env_hash: str | None) -> None:
        in_use = {w.env for w in self._workspaces.values()} | set(self._building.values())
        if env_hash and env_hash not in in_use:
            self.envs.remove(env_hash)

    def resume_installs(self) -> None:
        """At start: builds a previous run did not finish start again."""
        for ws in self._workspaces.values():
            if ws.state == WorkspaceState.INSTALLING:
                self._install_if_changed(ws)

    async def _stage(self, parts: AsyncIterable[FilePart]) -> Path:
        """Receive an upload into a new staging folder, within the upload limit and the size a
        whole workspace may have (what it adds to a workspace is checked once it is staged:
        files it replaces make room)."""
        staging = self.staging / new_id("upload")
        staging.mkdir()
        c = self.config
        max_bytes, why = (c.max_upload_bytes, "this daemon's upload limit") if c.max_upload_bytes <= c.max_workspace_bytes \
            else (c.max_workspace_bytes, "this daemon's workspace size limit")
        try:
            await receive(parts, staging, max_bytes, c.max_upload_files, why)
            await asyncio.to_thread(sync_tree, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    async def create(self, parts: AsyncIterable[FilePart], requirements: str | None = None) -> Workspace:
        # Checked before the upload is staged: a refusal must leave nothing behind.
        requirements = str(safe_relpath(requirements, "requirements path")) if requirements else None
        staging = await self._stage(parts)
        now = utc_now()
        ws = Workspace(id=new_id("workspace"), created_at=now, updated_at=now, requirements=requirements)
        folder = self.root / ws.id
        try:
            folder.mkdir()
            self.home_dir(ws.id).mkdir()
            os.rename(staging, self.files_dir(ws.id))
            fsync_path(folder)
            ws.files = _list_files(self.files_dir(ws.id))
            self.store.save(COLLECTION, ws.record())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._workspaces[ws.id] = ws
        log.info("workspace %s created with %d files", ws.id, len(ws.files))
        self._install_if_changed(ws)
        return ws

    async def add_files(self, workspace_id: str, parts: AsyncIterable[FilePart]) -> Workspace:
        ws = self.get(workspace_id)
        staging = await self._stage(parts)
        try:
            async with self._lock(ws.id):
                self.get(workspace_id)  # deleted while the upload streamed in
                self._check_room(ws, _list_files(staging))
                _merge(staging, self.files_dir(ws.id))
                ws.files = _list_files(self.files_dir(ws.id))
                ws.updated_at = utc_now()
                self.store.save(COLLECTION, ws.record())
                self._install_if_changed(ws)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ws

    def _check_room(self, ws: Workspace, staged: list[dict]) -> None:
        """TooLarge when the workspace would outgrow its limit with these files, counting each
        file it replaces as freed."""
        old = {f["path"]: f["size"] for f in ws.files}
        after = ws.size + sum(f["size"] - old.get(f["path"], 0) for f in staged)
        if after > self.config.max_workspace_bytes:
            raise TooLarge(f"not enough room left in the workspace: with these files it would hold {after} bytes, "
                           f"more than this daemon's limit of {self.config.max_workspace_bytes} bytes")

    def file_path(self, workspace_id: str, relpath: str) -> Path:
        root = self.files_dir(self.get(workspace_id).id).resolve()
        path = (root / safe_relpath(relpath, "file path")).resolve()
        # A link made at run time by a child must not let a download leave the workspace.
        if not path.is_relative_to(root) or not path.is_file():
            raise NotFound(f"workspace {workspace_id} has no file {relpath!r}")
        return path

    async def delete(self, workspace_id: str) -> Workspace:
        """Delete it with its files (whether objects still run in it is the coordinator's to check)."""
        ws = self.get(workspace_id)
        async with self._lock(ws.id):
            if (task := self._installs.pop(ws.id, None)) is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.store.delete(COLLECTION, ws.id)
            self._workspaces.pop(ws.id, None)
            self._drop_env_if_unused(ws.env)
            await asyncio.to_thread(shutil.rmtree, self.root / ws.id, True)
            if (install_log := self._logs.pop(ws.id, None)) is not None:
                install_log.remove()
            (self.config.home / "logs" / f"{ws.id}.log").unlink(missing_ok=True)
        self._locks.pop(ws.id, None)
        if (settled := self._settled.pop(ws.id, None)) is not None:
            settled.set()  # creates that waited for its install: it is gone, they answer 404
        log.info("workspace %s deleted", ws.id)
        return ws

    def _lock(self, workspace_id: str) -> asyncio.Lock:
        return self._locks.setdefault(workspace_id, asyncio.Lock())
