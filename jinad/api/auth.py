"""Bearer-token auth: with a token set, only `GET /` and the OpenAPI document are open."""

from __future__ import annotations

import hmac

from aiohttp import web

from .errors import error_response

OPEN_PATHS = frozenset({"/", "/openapi.json"})


def token_auth(token: str):
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        # EventSource and plain links cannot set headers, so browsers pass ?token=.
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), expected):
            return error_response("unauthorized", "send this daemon's token as 'Authorization: Bearer <token>' or ?token=")
        return await handler(request)

    return middleware
