"""Every error leaves as `{"error", "message"}` JSON with the contract's status; never HTML."""

from __future__ import annotations

import errno
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..config import truth
from ..errors import BadRequest, ContractError, shallow

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
    if isinstance(exc, ContractError):
        return error_response(exc.code, exc.message, **exc.details)
    if isinstance(exc, (HttpProcessingError, RequestPayloadError)):  # a malformed part, header, chunk or encoding
        detail = exc.message if isinstance(exc, HttpProcessingError) else " ".join(str(exc).split())
        return error_response("bad_request", f"malformed request: {detail}")
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = CODE_OF_STATUS.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        message = {
            404: f"no route {request.path}; see GET /openapi.json",
            405: f"{request.method} is not allowed on {request.path}",
            413: "request body is larger than this daemon accepts",
        }.get(exc.status, exc.reason)
        answer = error_response(code, message)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 says what is allowed
            answer.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return answer
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return error_response("insufficient_storage", "the daemon's disk is full; free space on it and try again")
    if isinstance(exc, ConnectionError):
        # The client went away (mid-upload, mid-stream): normal, and nobody reads this answer.
        log.debug("%s %s: the client went away (%s)", request.method, request.path, exc)
        return error_response("bad_request", "the client closed the connection")
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return error_response("internal", "the daemon hit an unexpected error; its log has the details")


def parse_json(text: str | bytes, max_depth: int, what: str) -> Any:
    """JSON from a client, or a 400 that says what is wrong with it (too deep included)."""
    try:
        return shallow(json.loads(text), max_depth, what)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # the decoder's own limit, far below what a 1 MiB body can nest
        raise BadRequest(f"{what} nests deeper than this daemon's limit of {max_depth} levels") from None


async def read_json(request: web.Request, max_depth: int) -> dict[str, Any]:
    """The request's JSON object body, or a 400 that says what is wrong with it."""
    body = parse_json(await request.read() or b"{}", max_depth, "body")
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def query_flag(request: web.Request, name: str, default: bool) -> bool:
    """A true/false query value (`?wait=false`), or a 400 naming it when it is neither."""
    try:
        return truth(request.query.get(name), default, strict=True)
    except ValueError as exc:
        raise BadRequest(f"query {name}: {exc}") from None
