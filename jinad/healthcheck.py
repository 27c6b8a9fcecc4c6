"""`python -m jinad.healthcheck`: exit 0 when the local daemon answers `GET /` with `{}`.

The Docker image's HEALTHCHECK. It finds the daemon as the client commands do, by the URL the
daemon wrote to its home (`daemon.json`), so it follows `--port-expose` and `--host` without
being told them. Standard library only: it runs every few seconds.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request

from .local import find, home_dir

TIMEOUT_S = 4


def healthy() -> tuple[bool, str]:
    daemon = find(home_dir())
    if daemon is None:
        return False, f"no daemon record in {home_dir()}"
    try:
        # Its own daemon on this machine, asked only whether it lives (no token is sent): over
        # HTTPS the certificate is not checked, as its CA may be known to clients only.
        unverified = ssl._create_unverified_context() if daemon.url.startswith("https:") else None
        with urllib.request.urlopen(daemon.url + "/", timeout=TIMEOUT_S, context=unverified) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as e:
        return False, f"{daemon.url}/: {e}"
    return body == {}, f"{daemon.url}/ answered {body!r}"


def main() -> int:
    ok, what = healthy()
    print(what)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
