"""Hostile inputs shared by the in-process and the end-to-end tests of what an attack found."""

from __future__ import annotations

import gzip
import io
import tarfile


def nested(depth: int) -> dict:
    """A JSON object nested `depth` levels deep."""
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def folders_only_tar_gz(count: int) -> bytes:
    """A tar.gz of `count` folder entries and nothing else: tiny packed, costly if kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for _ in range(count):
            info = tarfile.TarInfo("d")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    return gzip.compress(buf.getvalue(), 9)
