"""Log streaming from a real daemon running a real, chatty Executor."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp

from jinad.client.sse import iter_events
from tests.conftest import wait_until
from tests.e2e.helpers import CHATTY, SSE, read_stream, start_chatty


def chatty_numbers(entries) -> list[int]:
    return [int(m.group(1)) for e in entries if (m := CHATTY.match(e["line"]))]


async def test_resume_mid_stream_after_the_ring_wrapped_gets_every_line_once(http, daemon_factory):
    daemon = daemon_factory("--log-ring-lines", "1000", "--log-file-max-bytes", "2000000", "--log-file-backups", "20")
    total = 60_000
    pea = await start_chatty(http, daemon, total)
    url = f"{daemon.url}/logs/{pea['id']}?tail=all"
    first, _ = await read_stream(http, url, stop_after=5_000)
    # Reconnect well after the child moved on: the ring (1000 lines) has wrapped many times,
    # and the log file has rotated, so the rest comes from the files, then the ring.
    await wait_until(lambda: _log_has(http, daemon, pea["id"], "chatty done"), timeout=120, what="chatty done")
    rest, _ = await read_stream(http, url, headers={"Last-Event-ID": str(first[-1]["seq"])}, until_line="chatty done")
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "every seq exactly once, in order"
    assert chatty_numbers(first + rest) == list(range(total))
    assert len(list(daemon.home.glob(f"logs/{pea['id']}.log.*"))) >= 2, "the file rotated"


async def _log_has(http, daemon, object_id: str, text: str) -> bool:
    async with http.get(f"{daemon.url}/logs/{object_id}?tail=5&follow=false") as resp:
        return text in await resp.text()


async def test_fifty_subscribers_each_get_every_line(http, daemon):
    total = 20_000
    pea = await start_chatty(http, daemon, total, start_delay=3.0)
    url = f"{daemon.url}/logs/{pea['id']}?tail=all"
    results = await asyncio.gather(*(read_stream(http, url, until_line="chatty done") for _ in range(50)))
    for logs, _ in results:
        assert chatty_numbers(logs) == list(range(total))


async def test_a_subscriber_that_never_reads_does_not_hold_up_the_child(http, daemon):
    total = 150_000
    pea = await start_chatty(http, daemon, total, start_delay=1.0)
    stalled = socket.create_connection(("127.0.0.1", daemon.port))
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /logs/{pea['id']}?tail=all HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        began = time.monotonic()
        await wait_until(lambda: _log_has(http, daemon, pea["id"], "chatty done"), timeout=60, what="the child to finish")
        async with http.get(f"{daemon.url}/logs/{pea['id']}?tail=1&follow=false") as resp:
            child_seconds = float((await resp.text()).split()[-1])
        # The child wrote everything while a subscriber read nothing; the daemon kept serving.
        assert child_seconds < 30
        assert time.monotonic() - began < 60
        async with http.get(daemon.url + "/") as resp:
            assert resp.status == 200
    finally:
        stalled.close()


async def test_state_and_end_events_close_the_stream_when_the_object_is_deleted(http, daemon):
    pea = await start_chatty(http, daemon, 10)
    url = f"{daemon.url}/logs/{pea['id']}?tail=all"

    async def delete_soon():
        await wait_until(lambda: _log_has(http, daemon, pea["id"], "chatty done"), timeout=30, what="chatty done")
        async with http.delete(f"{daemon.url}/peas/{pea['id']}") as resp:
            assert resp.status == 200

    deleter = asyncio.create_task(delete_soon())
    logs, others = await asyncio.wait_for(read_stream(http, url), 60)
    await deleter
    assert chatty_numbers(logs) == list(range(10))
    states = [e.json()["state"] for e in others if e.event == "state"]
    assert states == ["starting", "ready", "stopping", "stopped"]  # from the start: tail=all
    assert others[-1].event == "end"


async def test_plain_text_tail_and_follow(http, daemon):
    pea = await start_chatty(http, daemon, 50)
    await wait_until(lambda: _log_has(http, daemon, pea["id"], "chatty done"), timeout=30, what="chatty done")
    async with http.get(f"{daemon.url}/logs/{pea['id']}?tail=3") as resp:
        assert resp.content_type == "text/plain"
        lines = (await resp.text()).splitlines()
    assert len(lines) == 3 and lines[0].startswith("chatty 00000048") and lines[-1].startswith("chatty done")

    async with http.get(f"{daemon.url}/logs/{pea['id']}?tail=0&follow=true") as resp:
        async with http.post(f"{daemon.url}/peas/{pea['id']}/restart") as restarted:
            assert restarted.status == 200
        seen = []
        async with asyncio.timeout(60):
            async for raw in resp.content:
                seen.append(raw.decode())
                if raw.startswith(b"chatty done"):
                    break
    assert sum(1 for line in seen if CHATTY.match(line)) == 50


async def test_events_stream_reports_state_changes(http, daemon):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.get(daemon.url + "/events", headers=SSE) as resp:
            pea = await start_chatty(http, daemon, 1)
            states = []
            async for event in iter_events(resp):
                data = event.json()
                if data["id"] == pea["id"]:
                    states.append(data["state"])
                if states[-2:] == ["starting", "ready"]:
                    break
    assert states == ["starting", "ready"]


async def test_bad_log_queries_are_400_and_unknown_ids_404(http, daemon):
    async with http.get(f"{daemon.url}/logs/jpea-nope") as resp:
        assert resp.status == 404
    pea = await start_chatty(http, daemon, 1)
    for query in ("tail=many", "since=-1"):
        async with http.get(f"{daemon.url}/logs/{pea['id']}?{query}") as resp:
            assert resp.status == 400, query
            assert (await resp.json())["error"] == "bad_request"


async def _raw(port: int, request: str, timeout: float = 30) -> bytes:
    """What the daemon answers a raw request, read until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


async def test_http10_and_head_clients_of_a_log_get_an_answer_that_ends(http, daemon):
    """HTTP/1.0 has no chunks: a log's body ends with the connection (it was a 500, and an SSE
    stream a 1.0 client asked to keep alive never ended). HEAD is the headers alone (the body
    came after them and broke the next request on the connection)."""
    pea = await start_chatty(http, daemon, 50)
    await wait_until(lambda: _log_has(http, daemon, pea["id"], "chatty done"), timeout=30, what="chatty done")
    path = f"/logs/{pea['id']}?tail=3"
    head, _, body = (await _raw(daemon.port, f"GET {path} HTTP/1.0\r\n\r\n")).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b"200 OK"), head
    assert b"Transfer-Encoding" not in head and body.decode().splitlines()[-1].startswith("chatty done")

    answer = await _raw(daemon.port, f"GET {path}&follow=false HTTP/1.0\r\nAccept: text/event-stream\r\n"
                                     "Connection: keep-alive\r\n\r\n")
    assert answer.split(b"\r\n")[0].endswith(b"200 OK") and answer.endswith(b"event: end\ndata: {}\n\n"), answer[-200:]

    answer = await _raw(daemon.port, f"HEAD {path} HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.endswith(b"\r\n\r\n{}") and b"chatty" not in answer, answer
