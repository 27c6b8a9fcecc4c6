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
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import AsyncIterable, Callable

from .config import Config
from .errors import BadRequest, Conflict, NotFound
from .ids import new_id, utc_now
from .store import Store, fsync_path
from .uploads import FilePart, receive, safe_relpath, sync_tree

log = logging.getLogger(__name__)
COLLECTION = "workspaces"


@dataclasses.dataclass
class Workspace:
    id: str
    created_at: str
    updated_at: str
    state: str = "ready"
    error: str | None = None
    # Derived from the folder, never stored: the disk is the truth about files.
    files: list[dict] = dataclasses.field(default_factory=list)

    def record(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "files"}

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "size": self.size}


def _list_files(root: Path) -> list[dict]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            found.append({"path": path.relative_to(root).as_posix(), "size": path.stat().st_size})
    return found


def _merge(staging: Path, dest: Path) -> None:
    """Move every staged file into dest, replacing files of the same path."""
    for folder, _, files in os.walk(staging):
        for name in files:
            src = Path(folder, name)
            target = dest / src.relative_to(staging)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    raise IsADirectoryError(target)
                os.replace(src, target)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                rel = src.relative_to(staging).as_posix()
                raise BadRequest(f"{rel!r} clashes with a file or folder of the same name in the workspace") from None
    fsync_path(dest)


class WorkspaceManager:
    def __init__(self, config: Config, store: Store) -> None:
        self.root = config.home / "workspaces"
        self.staging = config.home / "staging"
        self.store = store
        self.config = config
        self._workspaces: dict[str, Workspace] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Set by the object manager: does any object still run in this workspace?
        self.in_use: Callable[[str], bool] = lambda workspace_id: False

    def load(self) -> None:
        """Read the records back and remove what interrupted uploads left."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.root.mkdir(parents=True, exist_ok=True)
        for record in self.store.load_all(COLLECTION):
            ws = Workspace(**record)
            ws.files = _list_files(self.files_dir(ws.id))
            self._workspaces[ws.id] = ws
        for folder in self.root.iterdir():
            if folder.name not in self._workspaces:
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

    async def _stage(self, parts: AsyncIterable[FilePart], already: int = 0) -> Path:
        """Receive an upload into a new staging folder, within the upload limit and the room
        its workspace has left (`already` bytes are used)."""
        staging = self.staging / new_id("upload")
        staging.mkdir()
        c = self.config
        room = c.max_workspace_bytes - already
        max_bytes, why = (c.max_upload_bytes, "this daemon's upload limit") if c.max_upload_bytes <= room \
            else (room, f"the room left in the workspace (limit {c.max_workspace_bytes} bytes)")
        try:
            await receive(parts, staging, max_bytes, c.max_upload_files, why)
            await asyncio.to_thread(sync_tree, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    async def create(self, parts: AsyncIterable[FilePart]) -> Workspace:
        staging = await self._stage(parts)
        now = utc_now()
        ws = Workspace(id=new_id("workspace"), created_at=now, updated_at=now)
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
        return ws

    async def add_files(self, workspace_id: str, parts: AsyncIterable[FilePart]) -> Workspace:
        ws = self.get(workspace_id)
        staging = await self._stage(parts, already=ws.size)
        try:
            async with self._lock(ws.id):
                self.get(workspace_id)  # deleted while the upload streamed in
                _merge(staging, self.files_dir(ws.id))
                ws.files = _list_files(self.files_dir(ws.id))
                ws.updated_at = utc_now()
                self.store.save(COLLECTION, ws.record())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ws

    def file_path(self, workspace_id: str, relpath: str) -> Path:
        root = self.files_dir(self.get(workspace_id).id).resolve()
        path = (root / safe_relpath(relpath)).resolve()
        # A link made at run time by a child must not let a download leave the workspace.
        if not path.is_relative_to(root) or not path.is_file():
            raise NotFound(f"workspace {workspace_id} has no file {relpath!r}")
        return path

    async def delete(self, workspace_id: str) -> Workspace:
        ws = self.get(workspace_id)
        if self.in_use(workspace_id):
            raise Conflict(f"objects still run in workspace {workspace_id}; stop them or pass ?force=true")
        async with self._lock(ws.id):
            self.store.delete(COLLECTION, ws.id)
            self._workspaces.pop(ws.id, None)
            await asyncio.to_thread(shutil.rmtree, self.root / ws.id, True)
        self._locks.pop(ws.id, None)
        log.info("workspace %s deleted", ws.id)
        return ws

    def _lock(self, workspace_id: str) -> asyncio.Lock:
        return self._locks.setdefault(workspace_id, asyncio.Lock())
