"""Errors the managers raise; the HTTP layer turns each code into a status and a JSON body."""

from __future__ import annotations

from typing import Any


class ContractError(Exception):
    """An error a client can act on: a contract code, one sentence, and optional details."""

    code = "internal"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ContractError):
    code = "bad_request"


class NotFound(ContractError):
    code = "not_found"


class Conflict(ContractError):
    code = "conflict"


class TooLarge(ContractError):
    code = "too_large"


class FailedToStart(ContractError):
    code = "failed_to_start"


def check_plain_text(value: str, what: str) -> None:
    """BadRequest unless the string can go into a path, a command line or an environment: no
    NUL character and no lone surrogate (JSON allows both; the OS takes neither)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode text") from None
    if "\0" in value:
        raise BadRequest(f"{what} must not contain a NUL character")


def nesting_depth(value: Any, limit: int) -> int:
    """Nesting depth of loaded JSON or YAML, each node visited once (YAML aliases make a graph,
    and a 'billion laughs' document would take forever to walk as a tree); stops past `limit`."""
    seen: set[int] = set()
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
    return deepest


def shallow(value: Any, limit: int, what: str) -> Any:
    """The value, or BadRequest when it nests deeper than `limit`: deeper data would reach
    code that recurses (storing a record, encoding JSON) and fail there instead."""
    if nesting_depth(value, limit) > limit:
        raise BadRequest(f"{what} nests deeper than this daemon's limit of {limit} levels")
    return value
