"""Every error leaves as `{"error", "message"}` JSON with the contract's status; never HTML."""

from __future__ import annotations

import errno
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import BadRequest, JinadError

log = logging.getLogger(__name__)

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "failed_to_start": 422,
    "internal": 500,
    "insufficient_storage": 507,
}
CODE_OF_STATUS = {status: code for code, status in STATUS.items()}


def error_response(code: str, message: str, **details: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **details}, status=STATUS[code])


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for an exception a handler raised; HTTP redirects and the like are
    raised again (they are answers already)."""
    if isinstance(exc, JinadError):
        return error_response(exc.code, exc.message, **exc.details)
    if isinstance(exc, HttpProcessingError):  # a malformed multipart part, header or chunk
        return error_response("bad_request", f"malformed request: {exc.message}")
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = CODE_OF_STATUS.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        message = {
            404: f"no route {request.path}; see GET /openapi.json",
            405: f"{request.method} is not allowed on {request.path}",
            413: "request body is larger than this daemon accepts",
        }.get(exc.status, exc.reason)
        return error_response(code, message)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return error_response("insufficient_storage", "the daemon's disk is full; free space on it and try again")
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return error_response("internal", "the daemon hit an unexpected error; its log has the details")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400 that says what is wrong with it."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body
