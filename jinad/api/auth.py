"""Bearer-token auth: with a token set, only `GET /` and the OpenAPI document are open."""

from __future__ import annotations

import hmac

from aiohttp import web

from .errors import error_response

OPEN_PATHS = frozenset({"/", "/openapi.json"})


def refusal(request: web.Request, expected: bytes) -> web.Response | None:
    """The 401 for a request without the token, or None when it may pass."""
    if request.path in OPEN_PATHS:
        return None
    header = request.headers.get("Authorization", "")
    # EventSource and plain links cannot set headers, so browsers pass ?token=.
    # The scheme is case-insensitive (RFC 7235): "bearer" and "BEARER" are as good as "Bearer".
    given = header[7:].lstrip(" ") if header[:7].lower() == "bearer " else request.query.get("token", "")
    # Header bytes that are not UTF-8 come as lone surrogates: compare them as the bytes they were.
    if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        return None
    return error_response("unauthorized", "send this daemon's token as 'Authorization: Bearer <token>' or ?token=")
