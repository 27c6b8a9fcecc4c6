"""`/workspaces`: upload, list, get, download, delete."""

from __future__ import annotations

from aiohttp import web

from .errors import query_flag
from .keys import CONFIG, COORDINATOR, WORKSPACES
from .uploads import check_size, form_parts

routes = web.RouteTableDef()


@routes.post("/workspaces")
async def create_workspace(request: web.Request) -> web.Response:
    check_size(request, request.app[CONFIG].max_upload_bytes)
    # ?requirements=path names the requirements file when it is not requirements.txt at the root.
    ws = await request.app[WORKSPACES].create(form_parts(request, {"files"}), request.query.get("requirements"))
    return web.json_response(ws.to_json(), status=201)


@routes.get("/workspaces")
async def list_workspaces(request: web.Request) -> web.Response:
    return web.json_response([ws.to_json() for ws in request.app[WORKSPACES].list()])


@routes.get("/workspaces/{id}")
async def get_workspace(request: web.Request) -> web.Response:
    return web.json_response(request.app[WORKSPACES].get(request.match_info["id"]).to_json())


@routes.post("/workspaces/{id}/files")
async def add_files(request: web.Request) -> web.Response:
    check_size(request, request.app[CONFIG].max_upload_bytes)
    ws = await request.app[WORKSPACES].add_files(request.match_info["id"], form_parts(request, {"files"}))
    return web.json_response(ws.to_json())


@routes.get("/workspaces/{id}/files/{path:.+}")
async def download_file(request: web.Request) -> web.FileResponse:
    path = request.app[WORKSPACES].file_path(request.match_info["id"], request.match_info["path"])
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


@routes.delete("/workspaces/{id}")
async def delete_workspace(request: web.Request) -> web.Response:
    force = query_flag(request, "force", False)
    ws = await request.app[COORDINATOR].delete_workspace(request.match_info["id"], force)
    return web.json_response(ws.to_json())
