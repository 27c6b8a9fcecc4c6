"""The daemon's records on disk: one JSON file per record, replaced atomically.

A record is written to a temporary file, fsynced, renamed over the old one and the folder is
fsynced, so a `kill -9` or power loss leaves either the old record or the new one, never half.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a record that cannot be read or built raises; it is set aside, never a reason not to start.
BAD_RECORD = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _fits(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a field's type hint (str, int, float, dict, list, X | None)?"""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def from_record(cls: type[T], record: Any) -> T:
    """A dataclass from its stored record, or ValueError/TypeError when the record does not
    have its shape (a field missing, unknown or of the wrong type)."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in record and not _fits(record[field.name], hints[field.name]):
            raise ValueError(f"{field.name} is {record[field.name]!r}, not of type {hints[field.name]}")
    return cls(**record)


def fsync_path(path: Path | str) -> None:
    """Flush a file's or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """Records grouped by collection (`workspaces`, `objects`), each keyed by its `id`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, collection: str) -> Path:
        folder = self.root / collection
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save(self, collection: str, record: dict[str, Any]) -> None:
        folder = self._folder(collection)
        final = folder / f"{record['id']}.json"
        partial = folder / f".{record['id']}.json.partial"
        with open(partial, "w") as f:
            json.dump(record, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
        fsync_path(folder)

    def delete(self, collection: str, record_id: str) -> None:
        folder = self._folder(collection)
        (folder / f"{record_id}.json").unlink(missing_ok=True)
        fsync_path(folder)

    def load_all(self, collection: str, build: Callable[[Any], T]) -> list[T]:
        """Every complete record, built; partial writes from an interrupted save are dropped,
        and a record that cannot be read or built is moved to `corrupt/` and logged."""
        built = []
        for path in sorted(self._folder(collection).iterdir()):
            if path.name.startswith("."):
                path.unlink()
                continue
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or record.get("id") != path.stem:
                    raise ValueError(f"its id is not {path.stem!r}")
                built.append(build(record))
            except (OSError, *BAD_RECORD) as exc:
                self._set_aside(collection, path, exc)
        return built

    def _corrupt(self, collection: str) -> Path:
        return self.root / "corrupt" / collection

    def set_aside_ids(self, collection: str) -> set[str]:
        """Ids of the records set aside as unusable: what they name is kept, for a person to look at."""
        corrupt = self._corrupt(collection)
        return {path.stem for path in corrupt.iterdir()} if corrupt.is_dir() else set()

    def _set_aside(self, collection: str, path: Path, exc: Exception) -> None:
        corrupt = self._corrupt(collection)
        try:
            corrupt.mkdir(parents=True, exist_ok=True)
            os.replace(path, corrupt / path.name)
        except OSError as move_error:
            log.warning("record %s is unusable (%s) and could not be moved aside: %s", path, exc, move_error)
            return
        log.warning("record %s is unusable (%s); moved to %s", path.name, exc, corrupt)
