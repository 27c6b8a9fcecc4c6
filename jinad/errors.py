"""Errors the managers raise; the HTTP layer turns each code into a status and a JSON body."""

from __future__ import annotations


class JinadError(Exception):
    """An error a client can act on: a contract code, one sentence, and optional details."""

    code = "internal"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(JinadError):
    code = "bad_request"


class NotFound(JinadError):
    code = "not_found"


class Conflict(JinadError):
    code = "conflict"


class TooLarge(JinadError):
    code = "too_large"


class FailedToStart(JinadError):
    code = "failed_to_start"


def plain_text(value: str, what: str) -> str:
    """A string that can go into a path, a command line or an environment: no NUL character
    and no lone surrogate (JSON allows both; the OS takes neither)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode text") from None
    if "\0" in value:
        raise BadRequest(f"{what} must not contain a NUL character")
    return value
