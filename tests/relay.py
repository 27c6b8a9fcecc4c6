"""A delaying TCP relay, the tests' own latency (this kernel has no netem): run in a host whose
every incoming TCP connection iptables redirects to PORT; each is relayed to the same port of
TARGET, every chunk held back DELAY seconds in each direction (order kept).

    python tests/relay.py PORT TARGET DELAY
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: where a redirected connection was going
CHUNK = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    due: asyncio.Queue = asyncio.Queue()

    async def send() -> None:
        while (item := await due.get()) is not None:
            at, chunk = item
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            writer.write(chunk)
            await writer.drain()
        await asyncio.sleep(max(0.0, delay))
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(CHUNK):
            due.put_nowait((time.monotonic() + delay, chunk))
    except OSError:
        pass
    due.put_nowait(None)
    with contextlib.suppress(OSError):
        await sender


async def relay(target: str, delay: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    port, _ = struct.unpack("!2xH4s8x", sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16))
    try:
        up_reader, up_writer = await asyncio.open_connection(target, port)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay))
    finally:
        up_writer.close()
        writer.close()


async def main(port: int, target: str, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: relay(target, delay, r, w), "0.0.0.0", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
