"""`GET /logs/{id}` as server-sent events or plain text, and `GET /events`."""

from __future__ import annotations

import asyncio
import json
from typing import Iterable

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from ..errors import BadRequest
from ..logs import LogLine, StateNote, follow
from .keys import OBJECTS, STREAMS, WORKSPACES

routes = web.RouteTableDef()
DEFAULT_TAIL = 100
PING_INTERVAL_S = 15


def _whole(request: web.Request, name: str, raw: str) -> int:
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a whole number, not {raw!r}")
    return int(raw)


def _start_after(request: web.Request, last_seq: int) -> int:
    """The sequence number after which to start: a resume point, else the tail's start."""
    resume = request.headers.get("Last-Event-ID") or request.query.get("since")
    if resume is not None:
        return _whole(request, "Last-Event-ID" if "Last-Event-ID" in request.headers else "since", resume)
    tail = request.query.get("tail", str(DEFAULT_TAIL))
    if tail == "all":
        return 0
    return max(0, last_seq - _whole(request, "tail", tail))


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    return default if raw is None else raw.lower() not in ("0", "false", "no")


def _sse_frame(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _log_frame(entry: LogLine) -> bytes:
    """A line's SSE frame, encoded once for every follower (kept on the line)."""
    if entry.wire is None:
        entry.wire = _sse_frame("log", entry.to_json(), entry.seq).encode()
    return entry.wire


def _sse_frames(items: Iterable[LogLine | StateNote]) -> bytes:
    return b"".join(
        _log_frame(item) if isinstance(item, LogLine)
        else _sse_frame("state", {"state": item.state, "exit_code": item.exit_code}).encode()
        for item in items
    )


def _register_stream(request: web.Request) -> None:
    request.app[STREAMS].add(asyncio.current_task())


async def end_streams(app: web.Application) -> None:
    """on_shutdown: a follower would otherwise hold the daemon's exit until its timeout."""
    for task in list(app[STREAMS]):
        task.cancel()


@routes.get("/logs/{id}")
async def object_log(request: web.Request) -> web.StreamResponse:
    _register_stream(request)
    owner_id = request.match_info["id"]
    if owner_id.startswith("jworkspace-"):  # its requirements install
        owner = request.app[WORKSPACES]
        log, finished = owner.log_of(owner_id), lambda: owner.is_settled(owner_id)
    else:
        owner = request.app[OBJECTS]
        log, finished = owner.log_of(owner_id), lambda: owner.is_finished(owner_id)
    after = _start_after(request, log.last_seq)
    sse = "text/event-stream" in request.headers.get("Accept", "")
    resuming = "Last-Event-ID" in request.headers or "since" in request.query
    items = follow(log, after, _flag(request, "follow", default=sse), finished, resuming)
    if sse:
        resp = EventSourceResponse(ping_interval=PING_INTERVAL_S)
        await resp.prepare(request)
        async for batch in items:
            await resp.write(_sse_frames(batch))
        await resp.write(_sse_frame("end", {}).encode())
        resp.stop_streaming()
        return resp
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for batch in items:
        text = "".join(item.line + "\n" for item in batch if isinstance(item, LogLine))
        if text:
            await resp.write(text.encode())
    await resp.write_eof()
    return resp


@routes.get("/events")
async def state_events(request: web.Request) -> web.StreamResponse:
    _register_stream(request)
    resp = EventSourceResponse(ping_interval=PING_INTERVAL_S)
    await resp.prepare(request)
    async for event in request.app[OBJECTS].events():
        await resp.write(_sse_frame("state", event).encode())
    return resp
