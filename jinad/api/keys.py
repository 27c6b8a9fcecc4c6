"""Typed keys of the application's state, shared by every route module."""

from __future__ import annotations

import weakref

from aiohttp import web

from ..config import Config
from ..coordinator import Coordinator
from ..objects import ObjectManager
from ..workspaces import WorkspaceManager
from .front_door import HttpStats
from .wire import KeptBytes, ObjectBodies

CONFIG = web.AppKey("config", Config)
WORKSPACES = web.AppKey("workspaces", WorkspaceManager)
OBJECTS = web.AppKey("objects", ObjectManager)
COORDINATOR = web.AppKey("coordinator", Coordinator)
STARTED_AT = web.AppKey("started_at", float)
HTTP_STATS = web.AppKey("http_stats", HttpStats)
OBJECT_BODIES = web.AppKey("object_bodies", ObjectBodies)
SSE_FRAMES = web.AppKey("sse_frames", KeptBytes)  # of log batches
SSE_CHUNKS = web.AppKey("sse_chunks", KeptBytes)  # of lots, as HTTP chunks
# Tasks of open log and event streams, ended when the daemon shuts down.
STREAMS = web.AppKey("streams", weakref.WeakSet)
