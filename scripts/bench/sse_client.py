"""A cheap SSE load client, run as its own process: many connections to one `GET /logs/{id}`.

It speaks HTTP/1.1 over raw asyncio streams (uvloop) and never parses an event's JSON, so a
few processes of it can keep up with what one daemon sends:

  count    count the flood lines (`"line": "FL`) each connection receives until `flood done`,
           straight in the buffer the socket reads into (a BufferedProtocol);
  latency  read each `TK <n> <epoch>` line's write time and subtract it from the receipt time
           (the wall clock just after the socket read that brought it); samples go to --samples;
  idle     connect and hold the streams open until stdin closes.

It prints `ready <n>` once every connection has its response head, then (count, latency) one
JSON line with the results. Bounded by --timeout.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import re
import sys
import time
from urllib.parse import urlsplit

FLOOD_LINE = b'"line": "FL'
FLOOD_DONE = re.compile(rb'flood done (\d+) ([\d.]+) ([\d.]+)"')
TICK = re.compile(rb'"line": "TK (\d+) (\d+\.\d+)')
TICK_DONE = b'"line": "ticker done'
PLAIN_TICK = re.compile(rb"^TK (\d+) (\d+\.\d+)", re.M)
PLAIN_TICK_DONE = b"ticker done"
READ = 256 * 1024


class Dechunk:
    """The body of a `Transfer-Encoding: chunked` response, fed in reads of any size."""

    def __init__(self) -> None:
        self.buf = b""
        self.left = 0  # bytes of the current chunk still to come (+2 for its CRLF)

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while self.buf:
            if self.left > 2:  # the chunk's data
                take = self.buf[:self.left - 2]
                out.append(take)
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                continue
            if self.left:  # the CRLF after it
                drop = min(self.left, len(self.buf))
                self.buf = self.buf[drop:]
                self.left -= drop
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            size = int(self.buf[:end].split(b";")[0], 16)
            self.buf = self.buf[end + 2:]
            self.left = size + 2
        return b"".join(out)


async def connect(url: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    """Send the GET; the stream, and whether the body is chunked."""
    host, port, get = request(url, token)
    reader, writer = await asyncio.open_connection(host, port, limit=READ)
    writer.write(get)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"GET {url} answered {head[:200]!r}")
    return reader, writer, b"transfer-encoding: chunked" in head.lower()


class FloodCounter(asyncio.BufferedProtocol):
    """One `count` connection, as a fast consumer reads it: the socket reads into one buffer
    and the flood lines are counted there (`bytearray.count`), with no stream, task wake-up or
    copy per read, so the figure is the daemon's rate, not this client's."""

    KEEP = len(FLOOD_LINE) - 1  # bytes of a read kept for the next: a pattern cut between them

    def __init__(self, request: bytes, state: dict) -> None:
        self.request = request
        self.state = state
        state.update(lines=0, done_at=None)
        self.buf = bytearray(READ)
        self.view = memoryview(self.buf)
        self.kept = 0  # bytes at the buffer's start carried over from the last read
        self.head = False
        self.done_text = None  # from "flood done" on, until its whole line is here
        loop = asyncio.get_running_loop()
        self.ready, self.finished = loop.create_future(), loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.kept:]

    def buffer_updated(self, nbytes: int) -> None:
        end, start, buf = self.kept + nbytes, 0, self.buf
        if not self.head:
            at = buf.find(b"\r\n\r\n", 0, end)
            if at < 0:
                self.kept = end
                return
            status = bytes(buf[:at]).split(b" ", 2)[1]
            if status != b"200":
                self.ready.set_exception(RuntimeError(f"answered {bytes(buf[:min(at, 200)])!r}"))
                self.transport.close()
                return
            self.head, start = True, at + 4
            self.ready.set_result(None)
        if self.done_text is None:
            self.state["lines"] += buf.count(FLOOD_LINE, start, end)
            self.state["last_at"] = time.time()
            at = buf.find(b"flood done", start, end)
            if at >= 0:
                self.done_text = b""
                start = at
        if self.done_text is not None:
            self.done_text += bytes(buf[start:end])
            if done := FLOOD_DONE.search(self.done_text):
                self.state.update(done_at=self.state["last_at"], child_s=float(done[2]), began=float(done[3]))
                self.transport.close()
            self.kept = 0  # all it read is in done_text
            return
        self.kept = min(self.KEEP, end - start)
        buf[:self.kept] = buf[end - self.kept:end]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the response head"))
        if self.state["done_at"] is None:
            self.state["eof"] = True
        if not self.finished.done():
            self.finished.set_result(None)


def request(url: str, token: str) -> tuple[str, int, bytes]:
    """Host, port and the bytes of the GET."""
    parts = urlsplit(url)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n{auth}\r\n"
    return parts.hostname, parts.port, head.encode()


async def count_floods(url: str, token: str, connections: int, timeout: float) -> list[dict]:
    host, port, get = request(url, token)
    loop = asyncio.get_running_loop()
    states: list[dict] = [{} for _ in range(connections)]
    counters = []
    for start in range(0, connections, 100):  # bursts under the server's listen backlog
        made = await asyncio.gather(*(loop.create_connection(lambda st=st: FloodCounter(get, st), host, port)
                                      for st in states[start:start + 100]))
        counters += [protocol for _, protocol in made]
    await asyncio.gather(*(c.ready for c in counters))
    print(f"ready {len(counters)}", flush=True)
    _, pending = await asyncio.wait([c.finished for c in counters], timeout=timeout)
    for c in counters:
        if c.finished in pending:
            c.state["timeout"] = True
        c.transport.close()
    return states


async def time_ticks(reader: asyncio.StreamReader, chunked: bool, state: dict, samples: array.array, plain: bool) -> None:
    """Latency of every tick line; checks each arrives once, in order. `plain`: the body is
    the log's text (supervisord's logtail), not SSE events; it is de-chunked, so no chunk
    header can cut a line (SSE events are never cut: each write holds whole events)."""
    carry = b""
    dechunk = Dechunk() if plain and chunked else None
    state.update(lines=0, gaps=0, done=False)
    pattern, done_mark, end_mark = (PLAIN_TICK, PLAIN_TICK_DONE, b"\n") if plain else (TICK, TICK_DONE, b"\n\n")
    while chunk := await reader.read(READ):
        received = time.time()
        data = carry + (dechunk.feed(chunk) if dechunk else chunk)
        end = data.rfind(end_mark) + len(end_mark) if end_mark in data else 0  # complete; the rest waits
        complete, carry = data[:end], data[end:]
        for match in pattern.finditer(complete):
            if int(match[1]) != state["lines"]:
                state["gaps"] += 1
            state["lines"] = int(match[1]) + 1
            samples.append(received - float(match[2]))
        if done_mark in complete:
            state["done"] = True
            return
    state["eof"] = True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("count", "latency", "idle"))
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--token", default="")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--samples", help="latency: file to write the samples to (float64, seconds)")
    parser.add_argument("--plain", action="store_true", help="latency: the body is plain log text, not SSE")
    args = parser.parse_args()

    if args.mode == "count":
        states = await count_floods(args.url, args.token, args.connections, args.timeout)
        print(json.dumps({"connections": states, "finished_at": time.time()}), flush=True)
        return
    streams = []
    for start in range(0, args.connections, 100):  # bursts under the server's listen backlog
        streams += await asyncio.gather(*(connect(args.url, args.token) for _ in range(start, min(start + 100, args.connections))))
    print(f"ready {len(streams)}", flush=True)

    loop = asyncio.get_running_loop()
    if args.mode == "idle":
        await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
        return
    samples = array.array("d")
    states: list[dict] = [{} for _ in streams]
    tasks = [
        asyncio.ensure_future(time_ticks(r, chunked, st, samples, args.plain))
        for (r, _, chunked), st in zip(streams, states)
    ]
    _, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task, state in zip(tasks, states):
        if task in pending:
            task.cancel()
            state["timeout"] = True
        elif task.exception():
            state["error"] = repr(task.exception())
    for _, writer, _ in streams:
        writer.close()
    if args.samples:
        with open(args.samples, "wb") as f:
            samples.tofile(f)
    print(json.dumps({"connections": states, "finished_at": time.time()}), flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
