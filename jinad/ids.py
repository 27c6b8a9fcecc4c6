"""Typed ids (`jworkspace-<hex>`, `jflow-<hex>`, ...) and the timestamps records carry."""

from __future__ import annotations

import datetime
import secrets


def new_id(kind: str) -> str:
    return f"j{kind}-{secrets.token_hex(8)}"


def utc_now() -> str:
    """The current time as an RFC 3339 UTC string."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
