"""Multipart request bodies as streams of file parts for the managers."""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import BodyPartReader, web

from ..errors import BadRequest, TooLarge


class RenamedPart:
    """A multipart part under a name the daemon chose (a Flow YAML sent without a filename)."""

    def __init__(self, part: BodyPartReader, filename: str) -> None:
        self.part = part
        self.filename = filename

    async def read_chunk(self, size: int = BodyPartReader.chunk_size) -> bytes:
        return await self.part.read_chunk(size)


def check_size(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"upload of {request.content_length} bytes is larger than this daemon's limit of {limit} bytes")


async def form_parts(request: web.Request, names: set[str]) -> AsyncIterator[BodyPartReader]:
    """The parts of a multipart body, refusing fields not in `names`; nothing for an empty body."""
    if not request.body_exists:
        return
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send files as multipart/form-data 'files' parts")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in names:
                raise BadRequest(f"unexpected form field {part.name!r}; expected {', '.join(sorted(names))}")
            yield part
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
