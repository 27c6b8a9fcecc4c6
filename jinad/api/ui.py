"""`GET /ui`: the browser dashboard, one self-contained HTML page (no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()
PAGE = Path(__file__).resolve().parent.parent / "static" / "ui.html"


@routes.get("/ui")
async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})
