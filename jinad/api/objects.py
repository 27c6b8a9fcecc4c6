"""`/flows`, `/pods`, `/peas`: one set of handlers for the three kinds."""

from __future__ import annotations

import json

from aiohttp import web

from ..errors import BadRequest
from ..kinds import KINDS
from ..runner import NO_RESOURCES
from ..urls import netloc
from .errors import parse_json, query_flag, read_json
from .keys import CONFIG, COORDINATOR, OBJECT_BODIES, OBJECTS
from .uploads import RenamedPart, check_size, form_parts

routes = web.RouteTableDef()
KIND_OF_PLURAL = {kind.plural: kind.name for kind in KINDS.values()}
FLOW_FORM_OPTIONS = {"envs", "restart", "timeout_s", "limits", "tls", "owner"}


def _kind(request: web.Request) -> str:
    return KIND_OF_PLURAL[request.path.split("/", 2)[1]]


def _wait(request: web.Request) -> bool:
    return query_flag(request, "wait", True)


def _dialled(request: web.Request, body: dict) -> dict:
    """The object as a client on another machine sees it: its address on `advertise_host`, or
    else on the host this client reached the daemon by (not the daemon's own name, which
    other machines may not resolve)."""
    host = request.app[CONFIG].advertise_host or request.url.host
    if body["address"] and host:
        port = body["address"].rsplit(":", 1)[1]
        body["address"] = netloc(host, port)
    for part in body.get("parts", []):
        if host and "jinad" not in part:  # a Flow's local part: on this daemon's host too
            part["host"] = host
    return body


def _answer(request: web.Request, obj, created: bool) -> web.Response:
    body = _dialled(request, request.app[OBJECTS].to_json(obj))
    if not _wait(request):
        return web.json_response(body, status=202)
    return web.json_response(body, status=201 if created else 200)


def _form_option(name: str, text: str, max_depth: int):
    return parse_json(text, max_depth, f"form field {name!r}") if name in ("envs", "timeout_s", "limits", "tls") else text


async def _create_flow_from_upload(request: web.Request):
    """A Flow YAML part (and its files) in one request: the workspace is made on the fly."""
    check_size(request, request.app[CONFIG].max_upload_bytes)
    options: dict = {}
    flow_names: list[str] = []

    async def files():
        async for part in form_parts(request, {"flow", "files", *FLOW_FORM_OPTIONS}):
            if part.name == "flow":
                flow_names.append(part.filename or "flow.yml")
                yield RenamedPart(part, flow_names[-1]) if not part.filename else part
            elif part.name == "files":
                yield part
            else:
                try:
                    text = await part.text()
                except (UnicodeDecodeError, LookupError):  # LookupError: a charset Python does not know
                    raise BadRequest(f"form field {part.name!r} is not text in its charset") from None
                options[part.name] = _form_option(part.name, text, request.app[CONFIG].max_json_depth)

    def body_of(workspace_id: str) -> dict:
        if len(flow_names) != 1:
            raise BadRequest("send exactly one 'flow' part holding the Flow YAML")
        return {**options, "workspace_id": workspace_id, "filename": flow_names[0]}

    return await request.app[COORDINATOR].create_flow_from_upload(files(), body_of, _wait(request))


async def create(request: web.Request) -> web.Response:
    kind = _kind(request)
    if kind == "flow" and request.content_type.startswith("multipart/"):
        obj = await _create_flow_from_upload(request)
    else:
        obj = await request.app[OBJECTS].create(kind, await read_json(request, request.app[CONFIG].max_json_depth), _wait(request))
    return _answer(request, obj, created=True)


async def list_objects(request: web.Request) -> web.Response:
    objects = request.app[OBJECTS]
    return web.json_response([_dialled(request, objects.to_json(obj)) for obj in objects.list(_kind(request))])


async def get_object(request: web.Request) -> web.Response:
    objects = request.app[OBJECTS]
    obj = objects.get(_kind(request), request.match_info["id"])
    # Kept encoded until it or its resource sample changes: the most frequent request of
    # dashboards and scripts that poll.
    body = request.app[OBJECT_BODIES].body(objects, obj, request.host,
                                           lambda o: json.dumps(_dialled(request, objects.to_json(o))).encode())
    return web.Response(body=body, content_type="application/json")


async def restart_object(request: web.Request) -> web.Response:
    obj = await request.app[OBJECTS].restart(_kind(request), request.match_info["id"], _wait(request))
    return _answer(request, obj, created=False)


async def update_executor(request: web.Request) -> web.Response:
    body = await read_json(request, request.app[CONFIG].max_json_depth)
    obj = await request.app[OBJECTS].update_executor(request.match_info["id"], request.match_info["name"], body, _wait(request))
    return _answer(request, obj, created=False)


async def delete_object(request: web.Request) -> web.Response:
    objects = request.app[OBJECTS]
    obj = await objects.delete(_kind(request), request.match_info["id"])
    return web.json_response(_dialled(request, obj.to_json(NO_RESOURCES)))  # its tree is gone


for _plural in KIND_OF_PLURAL:
    # A literal path per kind, not one pattern for the three: aiohttp finds routes by their
    # literal prefix, a pattern only by trying each in turn.
    routes.post(f"/{_plural}")(create)
    routes.get(f"/{_plural}")(list_objects)
    routes.get(f"/{_plural}/{{id}}")(get_object)
    routes.post(f"/{_plural}/{{id}}/restart")(restart_object)
    routes.delete(f"/{_plural}/{{id}}")(delete_object)
routes.patch("/flows/{id}/executors/{name}")(update_executor)
