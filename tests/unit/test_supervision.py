import asyncio
import fcntl
import os
import sys

import psutil

from jinad.logs import Log
from jinad.objects import _cancel
from jinad.supervision import PIPE_BYTES, _connect, _PipeToLog, spawn, tree


async def test_a_task_that_swallows_a_cancel_is_still_stopped():
    swallowed = []

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # as asyncio.wait_for on 3.11 can, once

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel([task]), 5)
    assert swallowed and task.cancelled()


async def test_connect_tells_an_open_port_from_a_refused_one():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert await _connect("127.0.0.1", port) == "open"
    server.close()
    await server.wait_closed()
    assert await _connect("127.0.0.1", port) == "refused"


async def test_a_watching_supervisor_stops_at_the_first_cancel_whenever_it_comes(tmp_path):
    """Child.wait polls the child and its port every second; a cancel arriving at any point of
    that cycle must end it (it once got lost when it met a poll's timeout)."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = Log(tmp_path / "c.log", 100, 1 << 20, 1 << 20, 1)
    child = await spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, dict(os.environ), sink,
                        1000, "pea-test", str(tmp_path))
    try:
        for step in range(12):
            watcher = asyncio.create_task(child.wait(1.0, [port]))
            await asyncio.sleep(step * 0.09)  # spread over a whole watch interval and a bit
            watcher.cancel()
            done, _ = await asyncio.wait({watcher}, timeout=3)
            assert done, f"a cancel after {step * 0.09:.2f}s was lost"
            assert child.proc.returncode is None
    finally:
        await child.stop(2.0)
        server.close()
        sink.close()
    assert child.proc.returncode is not None and not tree(child.pid)
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE


async def test_a_pipe_that_fills_up_is_widened(tmp_path):
    sink = Log(tmp_path / "p.log", 100_000, 1 << 24, 1 << 24, 1)
    read_end, write_end = os.pipe()
    transport, reader = await asyncio.get_running_loop().connect_read_pipe(
        lambda: _PipeToLog("stdout", sink, 1000), open(read_end, "rb", buffering=0))
    try:
        os.write(write_end, b"a quiet line\n")
        await wait_for_line(sink, 1)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < PIPE_BYTES
        os.write(write_end, (b"x" * 99 + b"\n") * 600)  # 60 kB at once: the pipe was about full
        await wait_for_line(sink, 601)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == PIPE_BYTES
    finally:
        os.close(write_end)
        transport.close()
        sink.close()


async def wait_for_line(sink: Log, seq: int) -> None:
    async with asyncio.timeout(5):
        while sink.last_seq < seq:
            await asyncio.sleep(0.01)
