"""Receiving uploaded files into a staging folder: streamed to disk, paths checked, archives unpacked.

Nothing here touches a workspace: the caller moves a finished staging folder into place, or
deletes it, so a refused or interrupted upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import AsyncIterable, BinaryIO, Protocol

from .errors import BadRequest, TooLarge, plain_text
from .store import fsync_path

CHUNK = 256 * 1024
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


class FilePart(Protocol):
    """One uploaded file: a client-given relative path and its bytes, read chunk by chunk."""

    filename: str | None

    async def read_chunk(self, size: int = ...) -> bytes: ...


def safe_relpath(name: str | None) -> PurePosixPath:
    """The relative path a client named, or BadRequest when it would leave its folder."""
    if not name:
        raise BadRequest("every uploaded file needs a filename")
    path = PurePosixPath(plain_text(name, "an upload path").replace("\\", "/"))
    if path.is_absolute() or ":" in path.parts[0]:
        raise BadRequest(f"upload path {name!r} is absolute; give a path relative to the workspace")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BadRequest(f"upload path {name!r} leaves the workspace; '..' is not allowed")
    return PurePosixPath(*parts)


class _Budget:
    """Counts the bytes and files of one upload against the daemon's limits."""

    def __init__(self, max_bytes: int, max_files: int, why: str) -> None:
        self.max_bytes, self.max_files, self.why = max_bytes, max_files, why
        self.used = self.files = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.max_bytes:
            raise TooLarge(f"upload is larger than {self.why} of {self.max_bytes} bytes")

    def count_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise TooLarge(f"upload holds more than this daemon's limit of {self.max_files} files")


def _copy(src: BinaryIO, dest: Path, budget: _Budget) -> None:
    budget.count_file()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            budget.spend(len(chunk))
            out.write(chunk)


def _unpack_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    import tarfile  # imported on first use, as zipfile: ~1 MB of an idle daemon's memory

    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            rel = safe_relpath(member.name)
            if member.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                _copy(tar.extractfile(member), dest / rel, budget)
            else:
                raise BadRequest(f"archive {archive.name} holds {member.name!r}, which is a link or device; only files and folders are accepted")


def _unpack_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = safe_relpath(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadRequest(f"archive {archive.name} holds {info.filename!r}, which is a link; only files and folders are accepted")
            if info.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as src:
                    _copy(src, dest / rel, budget)


def _unpack(archive: Path, dest: Path, budget: _Budget) -> None:
    import tarfile
    import zipfile

    try:
        if archive.name.endswith(".zip"):
            _unpack_zip(archive, dest, budget)
        else:
            _unpack_tar(archive, dest, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk, not the archive: the HTTP layer says so
        if isinstance(exc, (NotADirectoryError, IsADirectoryError, FileExistsError)):
            raise BadRequest(f"archive {archive.name} puts a file and a folder at the same path") from None
        raise BadRequest(f"archive {archive.name} could not be unpacked: {exc}") from None


async def receive(parts: AsyncIterable[FilePart], staging: Path, max_bytes: int, max_files: int, why: str) -> None:
    """Stream every part into `staging`, unpacking archives; raise on the first bad part.
    `why` names the byte limit in the error (the upload limit, or the workspace's room left)."""
    budget = _Budget(max_bytes, max_files, why)
    archives = staging.parent / f"{staging.name}.archives"
    try:
        archive_count = 0
        async for part in parts:
            rel = safe_relpath(part.filename)
            is_archive = rel.name.lower().endswith(ARCHIVE_SUFFIXES)
            if is_archive:
                archive_count += 1
                target = archives / f"{archive_count}-{rel.name}"
            else:
                target = staging / rel
                budget.count_file()
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        budget.spend(len(chunk))
                        out.write(chunk)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                raise BadRequest(f"upload path {part.filename!r} clashes with a file or folder of the same name") from None
            if is_archive:
                await asyncio.to_thread(_unpack, target, staging, budget)
                target.unlink()
    finally:
        shutil.rmtree(archives, ignore_errors=True)


def sync_tree(root: Path) -> None:
    """fsync every file and folder under root, so a finished upload survives a crash."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)
