"""The REST and idle-memory baseline: a bare aiohttp hello-world on uvloop, run as jinad runs its app
(`web.run_app`, no access log). `python hello.py PORT`."""

import sys

import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), loop=uvloop.new_event_loop(), access_log=None, print=None)
