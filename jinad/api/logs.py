"""`GET /logs/{id}` as server-sent events or plain text, and `GET /events`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import re
from json.encoder import encode_basestring  # json.dumps of one string (the C encoder)
from typing import AsyncIterator, Callable, Iterable

from aiohttp import ClientConnectionResetError, HttpVersion11, web
from aiohttp_sse import EventSourceResponse

from ..errors import BadRequest
from ..logs import Batch, Deliver, Log, Lot, Piece, StateNote, follow
from .errors import query_flag
from .keys import COORDINATOR, OBJECTS, SSE_CHUNKS, SSE_FRAMES, STREAMS
from .wire import KeptBytes

routes = web.RouteTableDef()
DEFAULT_TAIL = 100
TEXT_TYPE = "text/plain; charset=utf-8"
PING_INTERVAL_S = 15


def _whole_number(name: str, raw: str) -> int:
    # ASCII digits only (str.isdigit takes '²' and '①', which int() refuses), and few enough
    # that int() takes them (it refuses more than 4300).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadRequest(f"{name} must be a whole number of at most 18 digits, not {raw[:40]!r}")
    return int(raw)


RFC3339_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")
RFC3339 = re.compile(RFC3339_NO_ZONE.pattern + r"([Zz]|[+-]\d{2}:\d{2})")


def _time(request: web.Request, name: str) -> datetime.datetime | None:
    """An RFC 3339 time of the query, with its zone, or None when not given."""
    raw = request.query.get(name)
    if raw is None:
        return None
    # RFC 3339's own shape first: fromisoformat alone takes ISO forms it does not (week dates,
    # a space for the T, +05). Its leap second (:60) is read as the second before.
    if not RFC3339.fullmatch(raw):
        if RFC3339_NO_ZONE.fullmatch(raw):
            raise BadRequest(f"{name} needs its time zone, like 2026-11-30T12:00:00Z or ...+01:00, not {raw!r}")
        raise BadRequest(f"{name} must be an RFC 3339 time like 2026-11-30T12:00:00Z, not {raw[:60]!r}")
    raw = re.sub(r"(?<=:)60(?=[.zZ+-])", "59", raw)
    try:  # Python 3.10's fromisoformat does not take "Z"
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if when.tzinfo is not None:
            return when.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be an RFC 3339 time like 2026-11-30T12:00:00Z, not {raw!r}") from None
    raise BadRequest(f"{name} needs its time zone, like 2026-11-30T12:00:00Z or ...+01:00, not {raw!r}")


def _stamp(when: datetime.datetime | None, round_up: bool) -> str | None:
    """A time as lines carry theirs (milliseconds, UTC, `Z`), so that the two compare as text;
    rounded up for a window's start, so that it holds no line before the time asked for."""
    if when is None:
        return None
    if round_up and when.microsecond % 1000:
        try:
            when += datetime.timedelta(microseconds=1000 - when.microsecond % 1000)
        except OverflowError:
            raise BadRequest("since_time is past the last time there can be") from None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _start_after(request: web.Request, log: Log, since: str | None) -> int:
    """The sequence number after which to start: a resume point, else the tail's start; with
    `since_time`, not before it (and its tail is the last N lines of those, default all)."""
    first = log.seq_before(since) if since is not None else 0
    resume = request.headers.get("Last-Event-ID") or request.query.get("since")
    if resume is not None:
        return max(first, _whole_number("Last-Event-ID" if "Last-Event-ID" in request.headers else "since", resume))
    tail = request.query.get("tail", str(DEFAULT_TAIL) if since is None else "all")
    if tail == "all":
        return first
    return max(first, log.last_seq - _whole_number("tail", tail))


def _sse_frame(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


class BatchFrames:
    """A batch's SSE frames, encoded once for every follower, and where each line's frame ends:
    a follower handed part of the batch (one that joined or fell behind mid-batch) gets a
    slice of them, not an encoding or a copy of its own."""

    __slots__ = ("data", "ends")

    def __init__(self, batch: Batch) -> None:
        # Written as json.dumps would: the per-batch part once, per line its number and text.
        common = f'"ts": {encode_basestring(batch.ts)}, "stream": {encode_basestring(batch.stream)}, "line": '
        frames = [f'event: log\nid: {seq}\ndata: {{"seq": {seq}, {common}{encode_basestring(line)}}}\n\n'
                  for seq, line in enumerate(batch.lines, batch.first)]
        text = "".join(frames)
        if text.isascii():  # a character is a byte: the lengths are the frames' own
            self.ends = list(itertools.accumulate(map(len, frames)))
            data = text.encode("ascii")
        else:
            encoded = [frame.encode() for frame in frames]
            self.ends = list(itertools.accumulate(map(len, encoded)))
            data = b"".join(encoded)
        self.data = memoryview(data)

    def __len__(self) -> int:  # what KeptBytes counts
        return len(self.data)

    def lines(self, start: int, stop: int) -> memoryview:
        return self.data[self.ends[start - 1] if start else 0:self.ends[stop - 1]]


def _sse_frames(items: Iterable[Piece | StateNote], kept: KeptBytes) -> list[bytes | memoryview]:
    return [
        kept.get(item.batch, BatchFrames).lines(item.start, item.stop) if isinstance(item, Piece)
        else _sse_frame("state", {"state": item.state, "exit_code": item.exit_code}).encode()
        for item in items
    ]


class Chunk:
    """An HTTP chunk as the buffers it is made of (its size line, the frames, its end), written
    with one writev: the frames are not copied into it."""

    __slots__ = ("parts", "size")

    def __init__(self, frames: list[bytes | memoryview]) -> None:
        self.size = sum(map(len, frames))
        self.parts = [b"%x\r\n" % self.size, *frames, b"\r\n"]

    def __len__(self) -> int:  # what KeptBytes counts
        return self.size

    def body(self) -> bytes:
        return b"".join(self.parts[1:-1])


async def _send_chunk(request: web.Request, resp: web.StreamResponse, chunk: Chunk) -> None:
    """An HTTP chunk, framed already (and shared by the followers at the same place in the log),
    straight to the socket: StreamResponse.write would only frame it again, per follower. Then
    wait while the client's socket buffer is full, as StreamResponse.write does."""
    writer = request.writer
    if not getattr(writer, "chunked", False):  # HTTP/1.0: the body as it is
        await resp.write(chunk.body())
        return
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientConnectionResetError("Cannot write to closing transport")
    transport.writelines(chunk.parts)
    await writer.drain()


def _deliverer(request: web.Request, chunk_of: Callable[[list[Piece | StateNote]], Chunk]) -> Deliver | None:
    """For a parked follower: its lot's chunk straight to the socket, as long as the socket
    is not full (then the follower's task writes and waits); None for an HTTP/1.0 client."""
    if not getattr(request.writer, "chunked", False):
        return None
    protocol = request.protocol

    def deliver(lot: Lot) -> bool:
        transport = request.transport
        if transport is None or transport.is_closing() or protocol.writing_paused:
            return False
        transport.writelines(chunk_of(lot.items).parts)
        return True

    return deliver


@contextlib.asynccontextmanager
async def _event_stream(request: web.Request) -> AsyncIterator[EventSourceResponse]:
    """An SSE response whose keep-alive task ends with the handler, also when the handler is
    cancelled because its client went away (the task would otherwise live on, one per client)."""
    resp = EventSourceResponse(ping_interval=PING_INTERVAL_S)
    _end_by_length_or_close(request, resp)
    await resp.prepare(request)
    try:
        yield resp
    finally:
        resp.stop_streaming()


def wants_event_stream(accept: str) -> bool:
    """Does an Accept header take `text/event-stream`? Media types are case-insensitive, and a
    type given `q=0` is refused (RFC 9110, 12.5.1)."""
    for item in accept.split(","):
        media, *params = item.split(";")
        if media.strip().lower() == "text/event-stream":
            weights = [p.split("=", 1)[1].strip() for p in params if p.strip().lower().startswith("q=")]
            try:
                return not weights or float(weights[0]) > 0
            except ValueError:
                return False
    return False


def _end_by_length_or_close(request: web.Request, resp: web.StreamResponse) -> None:
    """A stream's end as its client can tell it: the last chunk over HTTP/1.1, the connection's
    close over HTTP/1.0, which has no chunks (kept alive, a 1.0 client would wait for ever)."""
    if request.version >= HttpVersion11:
        resp.enable_chunked_encoding()
    else:
        resp.force_close()


def _stream_head() -> web.Response:
    """HEAD of an event stream: its headers, and no stream (aiohttp-sse serves GET alone)."""
    return web.Response(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})


def _register_stream(request: web.Request) -> None:
    request.app[STREAMS].add(asyncio.current_task())


async def end_streams(app: web.Application) -> None:
    """on_shutdown: a follower would otherwise hold the daemon's exit until its timeout."""
    for task in list(app[STREAMS]):
        task.cancel()


@routes.get("/logs/{id}")
async def object_log(request: web.Request) -> web.StreamResponse:
    _register_stream(request)
    object_id = request.match_info["id"]
    if "part" in request.query:  # one part of a Flow: its own log, the lines the Flow's log holds marked
        object_id = request.app[OBJECTS].part_named(object_id, request.query["part"]).id
    log, finished = request.app[COORDINATOR].log_of(object_id)
    since, until = _time(request, "since_time"), _time(request, "until_time")
    since_ts, until_ts = _stamp(since, round_up=True), _stamp(until, round_up=False)
    after = _start_after(request, log, since_ts)
    sse = wants_event_stream(request.headers.get("Accept", ""))
    resuming = "Last-Event-ID" in request.headers or "since" in request.query
    following, stop_at = query_flag(request, "follow", sse), None
    if until is not None:  # a follow ends when `until` comes: no later line can be in the window
        left = (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        following, stop_at = following and left > 0, asyncio.get_running_loop().time() + left
    if sse and request.method == "HEAD":
        return _stream_head()
    if sse:
        frames, chunks = request.app[SSE_FRAMES], request.app[SSE_CHUNKS]

        def shared_chunk(items: list[Piece | StateNote]) -> Chunk:
            return chunks.get(items, lambda items: Chunk(_sse_frames(items, frames)))

        # Lots are shared by the followers at the same place, but a window's are its own.
        shared = since_ts is None and until_ts is None
        async with _event_stream(request) as resp:
            deliver = _deliverer(request, shared_chunk) if shared else None
            # Closed as the handler ends, however it ends: the log counts its followers.
            async with contextlib.aclosing(follow(log, after, following, finished, resuming, since_ts, until_ts,
                                                  stop_at, deliver)) as items:
                async for lot in items:
                    chunk = shared_chunk(lot) if shared else Chunk(_sse_frames(lot, frames))
                    await _send_chunk(request, resp, chunk)
            await resp.write(_sse_frame("end", {}).encode())
        return resp
    if request.method == "HEAD":  # its headers only: a body after them would break a kept-alive connection
        return web.Response(headers={"Content-Type": TEXT_TYPE})
    async with contextlib.aclosing(follow(log, after, following, finished, resuming, since_ts, until_ts, stop_at)) as items:
        resp = web.StreamResponse(headers={"Content-Type": TEXT_TYPE})
        _end_by_length_or_close(request, resp)
        await resp.prepare(request)
        async for batch in items:
            text = "".join(line + "\n" for item in batch if isinstance(item, Piece) for line in item.lines)
            if text:
                await resp.write(text.encode())
        await resp.write_eof()
        return resp


@routes.get("/events")
async def state_events(request: web.Request) -> web.StreamResponse:
    if request.method == "HEAD":
        return _stream_head()
    _register_stream(request)
    async with _event_stream(request) as resp:
        async for event in request.app[OBJECTS].events():
            await resp.write(_sse_frame("state", event).encode())
    return resp
