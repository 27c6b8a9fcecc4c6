"""A cheap SSE load client, run as its own process: many connections to one `GET /logs/{id}`.

It speaks HTTP/1.1 over raw asyncio streams (uvloop) and never parses an event's JSON, so a
few processes of it can keep up with what one daemon sends:

  count    count the flood lines (`"line": "FL`) each connection receives until `flood done`;
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
FLOOD_DONE = re.compile(rb'"line": "flood done (\d+) ([\d.]+) ([\d.]+)"')
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
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=READ)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n{auth}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"GET {path} answered {head[:200]!r}")
    return reader, writer, b"transfer-encoding: chunked" in head.lower()


async def count_flood(reader: asyncio.StreamReader, state: dict) -> None:
    """Flood lines received, and the receipt time of `flood done` (with the writer's own timing)."""
    carry = b""
    state.update(lines=0, done_at=None)
    while chunk := await reader.read(READ):
        data = carry + chunk
        state["lines"] += data.count(FLOOD_LINE)
        state["last_at"] = time.time()
        if b"flood done" in data:
            done = FLOOD_DONE.search(data)
            if done:
                state.update(done_at=state["last_at"], child_s=float(done[2]), began=float(done[3]))
                return
        carry = data[-(len(FLOOD_LINE) - 1):]  # a pattern cut by the read is counted next time
    state["eof"] = True


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
        asyncio.ensure_future(count_flood(r, st) if args.mode == "count" else time_ticks(r, chunked, st, samples, args.plain))
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
