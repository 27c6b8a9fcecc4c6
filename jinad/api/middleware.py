"""The daemon's one middleware: the token check, then every error as JSON. One, not two:
aiohttp wraps each middleware around every request, which shows on a busy GET.

The server cancels a handler whose client went away (`handler_cancellation`), so a stream
nobody reads ends at once and frees its memory. A change (any method but GET) runs to its
end all the same, shielded, as `docker rm` finishes when its client is interrupted: a half
done create or delete would leave an object nobody can clean up.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .auth import refusal
from .errors import error_answer

READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


def front_door(token: str):
    expected = token.encode() if token else None

    async def answer(request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return error_answer(request, exc)

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if expected is not None and (refused := refusal(request, expected)) is not None:
            return refused
        if request.method in READ_ONLY:
            return await answer(request, handler)
        return await asyncio.shield(answer(request, handler))

    return middleware
