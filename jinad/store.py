"""The daemon's records on disk: one JSON file per record, replaced atomically.

A record is written to a temporary file, fsynced, renamed over the old one and the folder is
fsynced, so a `kill -9` or power loss leaves either the old record or the new one, never half.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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

    def load_all(self, collection: str) -> list[dict[str, Any]]:
        """Every complete record; partial writes from an interrupted save are dropped."""
        records = []
        for path in sorted(self._folder(collection).iterdir()):
            if path.name.startswith("."):
                path.unlink()
                continue
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                log.error("skipping unreadable record %s: %s", path, exc)
        return records
