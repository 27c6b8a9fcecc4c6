"""The daemon's one middleware: the token check, then every error as JSON. One, not two:
aiohttp wraps each middleware around every request, which shows on a busy GET."""

from __future__ import annotations

from aiohttp import web

from .auth import refusal
from .errors import error_answer


def front_door(token: str):
    expected = token.encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        try:
            if expected is not None and (refused := refusal(request, expected)) is not None:
                return refused
            return await handler(request)
        except Exception as exc:
            return error_answer(request, exc)

    return middleware
