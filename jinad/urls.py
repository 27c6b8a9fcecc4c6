"""Daemon URLs and host names as users write them: one check for the client's --host, a Flow
YAML's `jinad:` and the daemon's own settings (remote_tokens, advertise_host)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def daemon_url(text: str, example: str = "http://127.0.0.1:8000") -> str:
    """`host:port` or a URL -> a daemon URL (scheme in lower case, no trailing slash);
    ValueError when it cannot be one. A user name or password in it is refused: tokens go in
    their own settings, and a URL is shown in logs and objects."""
    url = (text if "://" in text else f"http://{text}").rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not a daemon URL like {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"a daemon URL carries no user or password (give a token instead), not {parts.scheme}://…@{parts.hostname}")
    return parts.scheme.lower() + url[len(parts.scheme):]


def netloc(host: str, port: int | str) -> str:
    """`host:port` as a URL or an address holds it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_name(text: str) -> str:
    """A host name (RFC 1123) or an IP address, as others dial it; ValueError if not."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in text.rstrip(".").split(".")):
            return text
        raise ValueError(f"{text!r} is neither a host name nor an IP address") from None
    return f"[{address}]" if address.version == 6 else str(address)
