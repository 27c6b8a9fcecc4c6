"""Multipart request bodies as streams of file parts for the managers."""

from __future__ import annotations

import re
from typing import AsyncIterator
from urllib.parse import unquote

from aiohttp import BodyPartReader, hdrs, web

from ..errors import BadRequest, TooLarge

ABSOLUTE_FILENAME = re.compile(r'filename\s*=\s*"[/\\]')


class RenamedPart:
    """A multipart part under a name the daemon decoded or chose."""

    def __init__(self, part: BodyPartReader, filename: str) -> None:
        self.part = part
        self.filename = filename

    @property
    def name(self) -> str | None:
        return self.part.name

    async def read_chunk(self, size: int = BodyPartReader.chunk_size) -> bytes:
        return await self.part.read_chunk(size)

    async def text(self) -> str:
        return await self.part.text()


def check_size(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"upload of {request.content_length} bytes is larger than this daemon's limit of {limit} bytes")


async def form_parts(request: web.Request, names: set[str]) -> AsyncIterator[BodyPartReader | RenamedPart]:
    """The parts of a multipart body, refusing fields not in `names`; nothing for an empty body."""
    if not request.body_exists:
        return
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send files as multipart/form-data 'files' parts")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("a multipart part holds another multipart body; send each file as a part of its own")
            if part.name is None:
                raise BadRequest(f"a multipart part has no Content-Disposition name; expected {', '.join(sorted(names))}")
            if part.name not in names:
                raise BadRequest(f"unexpected form field {part.name!r}; expected {', '.join(sorted(names))}")
            # aiohttp drops the leading slashes of a quoted filename itself: an absolute path is
            # refused as the contract says, not stored quietly somewhere else.
            if ABSOLUTE_FILENAME.search(part.headers.get(hdrs.CONTENT_DISPOSITION, "")):
                raise BadRequest(f"upload path of part {part.name!r} is absolute; give a path relative to the workspace")
            # aiohttp's client sends filenames percent-encoded (src%2Fenc.py), curl and browsers
            # raw; decoding both gives the same path, and the path checks come after this.
            yield RenamedPart(part, unquote(part.filename)) if part.filename else part
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
