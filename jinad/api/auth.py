"""Bearer-token auth: with a token set, only `GET /` and the OpenAPI document are open."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket

from aiohttp import web

from ..config import Config

from .errors import error_response

OPEN_PATHS = frozenset({"/", "/openapi.json"})


def refusal(request: web.Request, expected: bytes) -> web.Response | None:
    """The 401 for a request without the token, or None when it may pass."""
    if request.path in OPEN_PATHS:
        return None
    header = request.headers.get("Authorization", "")
    # EventSource and plain links cannot set headers, so browsers pass ?token=.
    # The scheme is case-insensitive (RFC 7235): "bearer" and "BEARER" are as good as "Bearer".
    given = header[7:] if header[:7].lower() == "bearer " else request.query.get("token", "")
    # Header bytes that are not UTF-8 come as lone surrogates: compare them as the bytes they were.
    if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        return None
    return error_response("unauthorized", "send this daemon's token as 'Authorization: Bearer <token>' or ?token=")


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def resolve_token(config: Config) -> Config:
    """Auth on by default off loopback: with no token given (and no --no-auth), make one and
    keep it in the home with mode 0600, so it stays the same across restarts."""
    if config.token or config.no_auth or is_loopback(config.host):
        return config
    path = config.home / "token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return config.replace(token=path.read_text().strip())
