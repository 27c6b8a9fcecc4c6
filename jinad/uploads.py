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

from .errors import BadRequest, TooLarge, check_plain_text
from .store import fsync_path

CHUNK = 256 * 1024
DIR_ENTRY_BYTES = 512  # what a folder entry of an archive counts against the byte budget: a tar header
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


class FilePart(Protocol):
    """One uploaded file: a client-given relative path and its bytes, read chunk by chunk."""

    filename: str | None

    async def read_chunk(self, size: int = ...) -> bytes: ...


NAME_MAX = 255  # bytes of one path component, as Linux file systems take them
# Bytes of a path inside a workspace: the OS takes 4096 for the whole path, and the daemon's
# home, the workspace's (or staging's) folder come before it.
PATH_MAX = 1024


def safe_relpath(name: str | None, what: str = "upload path") -> PurePosixPath:
    """The relative path a client named, or BadRequest when it names no file in its folder.
    `what` says whose path it is in the message (an upload's, a download's, ...)."""
    if not name:
        raise BadRequest(f"every {what} needs a file name")
    check_plain_text(name, f"{what} {name[:100]!r}")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise BadRequest(f"{what} {name!r} is absolute; give a path relative to the workspace")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"{what} {name!r} leaves the workspace; '..' is not allowed")
    if not parts:
        raise BadRequest(f"{what} {name!r} names the workspace itself, not a file in it")
    if len(name.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in parts):
        raise BadRequest(f"{what} {name[:100]!r}... is too long: at most {NAME_MAX} bytes a name and {PATH_MAX} in all")
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
    _mkdir(dest.parent)
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            budget.spend(len(chunk))
            out.write(chunk)


def _mkdir(folder: Path) -> None:
    if not folder.is_dir():  # the common case costs one stat, not a walk up the path
        folder.mkdir(parents=True, exist_ok=True)


def _folder(dest: Path, budget: _Budget) -> None:
    """A folder entry of an archive: it counts as a file and a header's bytes, so an archive of
    nothing but folder entries is bounded as one of files is."""
    budget.count_file()
    budget.spend(DIR_ENTRY_BYTES)
    _mkdir(dest)


def _unpack_tar(archive: Path, name: str, dest: Path, budget: _Budget) -> None:
    import tarfile  # imported on first use, as zipfile: ~1 MB of an idle daemon's memory

    with tarfile.open(archive, "r:*") as tar:
        # Member by member, forgetting each: iterating the TarFile keeps every member it read.
        while (member := tar.next()) is not None:
            tar.members.clear()
            rel = safe_relpath(member.name, f"archive {name}: entry")
            if member.isdir():
                _folder(dest / rel, budget)
            elif member.isfile():
                _copy(tar.extractfile(member), dest / rel, budget)
            else:
                raise BadRequest(f"archive {name} holds {member.name!r}, which is a link or device; only files and folders are accepted")


def _unpack_zip(archive: Path, name: str, dest: Path, budget: _Budget) -> None:
    import zipfile

    with open(archive, "rb") as f:
        # ZipFile reads its whole directory at once: count the entries first, from the end record.
        end = zipfile._EndRecData(f)  # noqa: SLF001 - the only way to the count without the directory
    if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > budget.max_files - budget.files:  # noqa: SLF001
        raise TooLarge(f"archive {name} holds more than this daemon's limit of {budget.max_files} files")
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = safe_relpath(info.filename, f"archive {name}: entry")
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 from systems that record no mode
            if info.is_dir():
                _folder(dest / rel, budget)
            elif kind in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    _copy(src, dest / rel, budget)
            else:
                raise BadRequest(f"archive {name} holds {info.filename!r}, which is a link or device; only files and folders are accepted")


def _unpack(archive: Path, name: str, dest: Path, budget: _Budget) -> None:
    """Unpack `archive` (uploaded as `name`, which messages use) into dest."""
    import tarfile
    import zipfile

    try:
        if name.lower().endswith(".zip"):
            _unpack_zip(archive, name, dest, budget)
        else:
            _unpack_tar(archive, name, dest, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk, not the archive: the HTTP layer says so
        if isinstance(exc, (NotADirectoryError, IsADirectoryError, FileExistsError)):
            raise BadRequest(f"archive {name} puts a file and a folder at the same path") from None
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            raise BadRequest(f"archive {name} holds a path too long for this daemon's disk") from None
        raise BadRequest(f"archive {name} could not be unpacked: {exc}") from None


async def receive(parts: AsyncIterable[FilePart], staging: Path, max_bytes: int, max_files: int, why: str) -> None:
    """Stream every part into `staging`, unpacking archives; raise on the first bad part.
    `why` names the byte limit in the error (the upload's, or a whole workspace's)."""
    budget = _Budget(max_bytes, max_files, why)
    archives = staging.parent / f"{staging.name}.archives"
    try:
        archive_count = 0
        async for part in parts:
            rel = safe_relpath(part.filename)
            is_archive = rel.name.lower().endswith(ARCHIVE_SUFFIXES)
            if is_archive:
                archive_count += 1
                target = archives / str(archive_count)
            else:
                target = staging / rel
                budget.count_file()
            try:
                _mkdir(target.parent)
                with open(target, "wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        budget.spend(len(chunk))
                        out.write(chunk)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                raise BadRequest(f"upload path {part.filename!r} clashes with a file or folder of the same name") from None
            except OSError as exc:
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                raise BadRequest(f"upload path {part.filename[:100]!r}... is too long for this daemon's disk") from None
            if is_archive:
                await asyncio.to_thread(_unpack, target, rel.as_posix(), staging, budget)
                target.unlink()
    finally:
        shutil.rmtree(archives, ignore_errors=True)


def sync_tree(root: Path) -> None:
    """fsync every file and folder under root, so a finished upload survives a crash."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)
