"""The aiohttp application: managers wired to routes, background work owned by cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import AsyncIterator

from aiohttp import web

from .api import health, logs, objects, ui, workspaces
from .api.auth import token_auth
from .api.errors import json_errors
from .api.keys import CONFIG, OBJECTS, STARTED_AT, STREAMS, WORKSPACES
from .config import Config
from .objects import ObjectManager
from .store import Store
from .workspaces import WorkspaceManager

log = logging.getLogger(__name__)
JSON_BODY_LIMIT = 1024 * 1024  # uploads stream past this; it bounds JSON bodies read whole


async def _managers(app: web.Application) -> AsyncIterator[None]:
    """Load state and recover children before serving; stop every child at shutdown."""
    app[WORKSPACES].load()
    await app[OBJECTS].recover()
    sampler = asyncio.create_task(_sample_resources(app))
    yield
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    await app[OBJECTS].shutdown()
    log.info("jinad stopped; every child ended")


async def _sample_resources(app: web.Application) -> None:
    while True:
        await asyncio.sleep(app[CONFIG].resource_interval_s)
        try:
            await app[OBJECTS].sample_resources()
        except Exception:
            log.exception("sampling resources failed")


def create_app(config: Config) -> web.Application:
    middlewares = [json_errors] + ([token_auth(config.token)] if config.token else [])
    app = web.Application(middlewares=middlewares, client_max_size=JSON_BODY_LIMIT)
    store = Store(config.home / "state")
    app[CONFIG] = config
    app[STARTED_AT] = time.monotonic()
    app[WORKSPACES] = WorkspaceManager(config.home, store, config.max_upload_bytes)
    app[OBJECTS] = ObjectManager(config, store, app[WORKSPACES])
    for module in (health, workspaces, objects, logs, ui):
        app.add_routes(module.routes)
    app[STREAMS] = weakref.WeakSet()
    app.on_shutdown.append(logs.end_streams)
    app.cleanup_ctx.append(_managers)
    return app
