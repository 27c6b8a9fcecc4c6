"""`GET /` (the seed's liveness check) and `GET /status`."""

from __future__ import annotations

import os
import socket
import time
from functools import cache

from aiohttp import web

from .. import __version__
from ..lazy import LazyModule
from .keys import CONFIG, OBJECTS, STARTED_AT, WORKSPACES

psutil = LazyModule("psutil")  # ~1 MB: loaded when first used (processes to scan or sample)

routes = web.RouteTableDef()


@cache
def jina_version() -> str | None:
    """Read from package metadata: the daemon never imports jina (100 MB, seconds to load).
    importlib.metadata itself is imported here, on first use: ~1 MB of an idle daemon."""
    import importlib.metadata

    try:
        return importlib.metadata.version("jina")
    except importlib.metadata.PackageNotFoundError:
        return None


@routes.get("/")
async def alive(request: web.Request) -> web.Response:
    # Its bytes as they are: json_response would encode `{}` again at every liveness probe.
    return web.Response(body=b"{}", content_type="application/json", charset="utf-8")


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(config.home))
    return web.json_response({
        "jinad": {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - app[STARTED_AT], 3),
            "host": socket.gethostname(),
            "port": config.port_expose,
        },
        "jina": {"version": jina_version()},
        "system": {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "memory": {"total": memory.total, "available": memory.available, "used": memory.used, "percent": memory.percent},
            "disk": {"total": disk.total, "used": disk.used, "free": disk.free, "percent": disk.percent},
        },
        "limits": app[OBJECTS].cgroups.available,
        "workspaces": app[WORKSPACES].count(),
        **app[OBJECTS].state_counts(),
    })
