"""`GET /openapi.json`: the OpenAPI 3 document of the whole API.

tests/api/test_openapi.py keeps it true: every route the app serves is here and every path
here is served; schemathesis checks live answers against it.
"""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from ..kinds import KINDS, MAX_OWNER_CHARS
from ..limits import LIMIT_KEYS, MIN_CPUS, MIN_MEMORY_BYTES
from ..states import LIVE, TERMINAL, Protocol, RemoteState, RestartPolicy, State, WorkspaceState

LIMITS = {
    "type": "object", "additionalProperties": False,
    "description": "caps enforced with cgroups; `400` where this daemon cannot (see `GET /status`)",
    "properties": {"memory": {"oneOf": [{"type": "integer", "minimum": MIN_MEMORY_BYTES}, {"type": "string"}],
                              "description": "bytes, or a size such as `200MiB`, `2GiB` (K, M, G, T are powers of 1024; KB, MB, GB, TB of 1000)"},
                   "cpus": {"type": "number", "minimum": MIN_CPUS, "description": "cores, as Docker's `--cpus`"},
                   "pids": {"type": "integer", "minimum": 1, "description": "most processes and threads at once"}},
}

routes = web.RouteTableDef()


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    texts = {400: "bad input", 401: "missing or wrong token", 404: "unknown id", 409: "conflict",
             413: "body too large", 422: "failed to start", 507: "disk full"}
    return {str(s): _json(_ref("Error"), texts[s]) for s in statuses}


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
WAIT = {"name": "wait", "in": "query", "schema": {"type": "boolean", "default": True},
        "description": "false: answer 202 at once, state `starting`"}
RESTART = {"enum": RestartPolicy.values()}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
UPLOAD = {
    "required": False,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
    }}},
}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "log_tail": {"type": "array", "items": {"type": "string"}}, "id": {"type": "string"}},
    },
    "Workspace": {
        "type": "object", "required": ["id", "state", "files", "size", "created_at", "updated_at", "error"],
        "properties": {
            "id": {"type": "string"}, "state": {"enum": WorkspaceState.values()},
            "files": {"type": "array", "items": {"type": "object", "required": ["path", "size"],
                                                 "properties": {"path": {"type": "string"}, "size": {"type": "integer"}}}},
            "size": {"type": "integer"}, "created_at": {"type": "string"}, "updated_at": {"type": "string"},
            "error": NULLABLE_STRING, "requirements": NULLABLE_STRING, "env": NULLABLE_STRING,
        },
    },
    "Object": {
        "type": "object",
        "required": ["id", "kind", "workspace_id", "state", "pid", "address", "protocol", "ports", "created_at",
                     "started_at", "exit_code", "restarts", "error", "resources", "remote"],
        "properties": {
            "id": {"type": "string"}, "kind": {"enum": list(KINDS)}, "workspace_id": {"type": "string"},
            # x-live / x-terminal: the groups of states, which the dashboard reads from here.
            "state": {"enum": State.values(), "x-live": [s.value for s in State if s in LIVE],
                      "x-terminal": [s.value for s in State if s in TERMINAL]},
            "pid": NULLABLE_INT, "address": NULLABLE_STRING,
            "protocol": {**NULLABLE_STRING, "description": "the protocol at `address` (a Flow's first gateway protocol)"},
            "ports": {"type": "object", "additionalProperties": {"type": "integer"}, "description": (
                "ports by name. Flow: `gateway` (its first protocol), `gateway-<protocol>` for each other "
                "protocol, one per executor name (`NAME/R` for each further port a replica of it may take). Pea: `executor`. Pod: `executor`, `executor-N`, "
                "`shard-S-replica-R`, `gateway`")},
            "created_at": {"type": "string"}, "started_at": NULLABLE_STRING, "exit_code": NULLABLE_INT,
            "restarts": {"type": "integer"}, "error": {**NULLABLE_STRING, "description": "why it is `exited` or `failed`, with the last error lines of its log"},
            "restart": RESTART,
            "resources": {"type": "object", "properties": {"cpu_percent": {"type": "number"},
                                                          "memory_rss": {"type": "integer"},
                                                          "processes": {"type": "integer"}}},
            "remote": {"type": "array", "items": {"type": "object"}},
            "parts": {"type": "array", "items": _ref("Part"), "description": (
                "Flow only: its gateway, then each executor replica that runs as a part of its own (a Pea owned by "
                "the Flow, restarted alone by the Flow's restart policy), then its parts on other daemons")},
            "degraded": {"type": "boolean", "description": "Flow only: `ready`, but a part of it is not (it serves with fewer replicas)"},
            "part_of": {**NULLABLE_STRING, "description": "Pea: the Flow it is a part of (it is listed there, not in `GET /peas`)"},
            "part": {**NULLABLE_STRING, "description": "Pea: the executor of its Flow it runs"},
            "replica": {**NULLABLE_INT, "description": "Pea: which replica of that executor it is"},
            "last_update": {"type": ["object", "null"], "description": (
                "Flow only: its last rolling update or scale (`PATCH /flows/{id}/executors/{name}`): `executor`, "
                "`state` (running, done, rolled_back, interrupted), `started_at`, `finished_at`, and `unavailable_s`: how "
                "long no replica of that executor served (with one replica, its restart; 0 with two or more)"),
                "properties": {"executor": {"type": "string"}, "state": {"type": "string", "enum": ["running", "done", "rolled_back", "interrupted"]},
                               "started_at": {"type": "string"}, "finished_at": NULLABLE_STRING, "unavailable_s": {"type": "number"}}},
            "owner": {**NULLABLE_STRING, "maxLength": MAX_OWNER_CHARS, "description": "who made it, for what (a Flow's remote part: `<flow id>/<part name>`); a retry finds it by this"},
            "limits": {"type": "object", "description": "its limits as enforced: memory in bytes, cpus, pids",
                       "properties": {"memory": {"type": "integer"}, "cpus": {"type": "number"}, "pids": {"type": "integer"}}},
        },
    },
    "Part": {
        "type": "object", "required": ["name", "replica", "kind", "state", "pid", "host", "port", "restarts", "error", "resources"],
        "properties": {
            "name": {"type": "string"}, "replica": {"type": "integer"}, "kind": {"enum": ["executor", "gateway"], "description": "a sharded executor runs inside the gateway's `jina flow`, not as parts"},
            "id": {"type": "string", "description": "the part's own object (a Pea; a Pod on `jinad` for a remote part)"},
            "state": {"enum": [*State.values(), *RemoteState.values(), None], "description": (
                "a part on another daemon: its Pod's state there as last seen (`missing`: that daemon has it no more), "
                "`unreachable` while its daemon does not answer, null until first asked")},
            "pid": NULLABLE_INT, "host": {"type": "string"}, "port": NULLABLE_INT, "restarts": NULLABLE_INT,
            "error": NULLABLE_STRING, "resources": {"type": ["object", "null"]}, "jinad": {"type": "string"},
        },
    },
    "UpdateExecutor": {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {"uses": {"type": "string"}, "py_modules": {"type": "array", "items": {"type": "string"}},
                       "uses_with": {"type": "object"}, "envs": {"type": "object"},
                       "replicas": {"type": "integer", "minimum": 1}},
    },
    "CreateFlow": {
        "type": "object", "required": ["workspace_id", "filename"],
        "properties": {"workspace_id": {"type": "string"}, "filename": {"type": "string"},
                       "tls": {"type": "boolean", "description": "serve the gateway with the daemon's certificate (`400` without one)"},
                       "envs": {"type": "object"}, "restart": RESTART,
                       "timeout_s": {"type": "number"}, "limits": LIMITS,
                       "owner": {"type": "string", "minLength": 1, "maxLength": MAX_OWNER_CHARS, "description": "who made it, for what (a Flow's remote part: `<flow id>/<part name>`); a retry finds it by this"}},
    },
    "CreateExecutor": {
        "type": "object", "required": ["workspace_id", "uses"],
        "properties": {"workspace_id": {"type": "string"}, "uses": {"type": "string"},
                       "py_modules": {"type": "array", "items": {"type": "string"}}, "uses_with": {"type": "object"},
                       "replicas": {"type": "integer", "minimum": 1}, "shards": {"type": "integer", "minimum": 1},
                       "protocol": {"enum": Protocol.values()}, "port": NULLABLE_INT,
                       "envs": {"type": "object"}, "restart": RESTART,
                       "timeout_s": {"type": "number"}, "limits": LIMITS,
                       "owner": {"type": "string", "minLength": 1, "maxLength": MAX_OWNER_CHARS, "description": "who made it, for what (a Flow's remote part: `<flow id>/<part name>`); a retry finds it by this"}},
    },
    "Status": {
        "type": "object", "required": ["jinad", "jina", "system", "workspaces", "flows", "pods", "peas"],
        "properties": {"jinad": {"type": "object"}, "jina": {"type": "object"}, "system": {"type": "object"},
                       "workspaces": {"type": "integer"}, "flows": {"type": "object"},
                       "pods": {"type": "object"}, "peas": {"type": "object"},
                       "limits": {"type": "object", "description": "which limits this daemon can enforce (a writable cgroup controller for each)",
                                  "properties": {key: {"type": "boolean"} for key in LIMIT_KEYS}}},
    },
}


def _kind_paths(plural: str, kind: str) -> dict:
    body_schema = _ref("CreateFlow") if kind == "flow" else _ref("CreateExecutor")
    content = {"application/json": {"schema": body_schema}}
    if kind == "flow":
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": {
            "flow": {"type": "string", "format": "binary"},
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}
    started = {"201": _json(_ref("Object"), "ready"), "202": _json(_ref("Object"), "starting (wait=false)")}
    return {
        f"/{plural}": {
            "get": {"summary": f"list {plural}", "responses": {"200": _json({"type": "array", "items": _ref("Object")}, plural)}},
            "post": {"summary": f"create a {kind}", "parameters": [WAIT], "requestBody": {"required": True, "content": content},
                     "responses": {**started, **_errors(400, 404, 409, 413, 422)}},
        },
        f"/{plural}/{{id}}": {
            "parameters": [ID],
            "get": {"summary": f"one {kind}", "responses": {"200": _json(_ref("Object"), kind), **_errors(404)}},
            "delete": {"summary": f"stop and remove a {kind}" + (" (`409` for a replica of a Flow: scale the Flow instead)" if kind == "pea" else ""),
                       "responses": {"200": _json(_ref("Object"), "stopped"), **_errors(*(404, 409) if kind == "pea" else (404,))}},
        },
        f"/{plural}/{{id}}/restart": {
            "parameters": [ID],
            "post": {"summary": f"restart a {kind}", "parameters": [WAIT],
                     "responses": {"200": _json(_ref("Object"), "ready again"), "202": _json(_ref("Object"), "starting"),
                                   **_errors(400, 404, 409, 422)}},
        },
    }


def document() -> dict:
    paths = {
        "/": {"get": {"summary": "liveness", "security": [], "responses": {"200": _json({"type": "object"}, "{}")}}},
        "/status": {"get": {"summary": "daemon, Jina, system and counts", "responses": {"200": _json(_ref("Status"), "status")}}},
        "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
        "/ui": {"get": {"summary": "the browser dashboard", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        "/workspaces": {
            "get": {"summary": "list workspaces", "responses": {"200": _json({"type": "array", "items": _ref("Workspace")}, "workspaces")}},
            "post": {"summary": "upload files as a new workspace", "requestBody": UPLOAD,
                     "parameters": [{"name": "requirements", "in": "query", "schema": {"type": "string"}}],
                     "responses": {"201": _json(_ref("Workspace"), "created"), **_errors(400, 413, 507)}},
        },
        "/workspaces/{id}": {
            "parameters": [ID],
            "get": {"summary": "one workspace", "responses": {"200": _json(_ref("Workspace"), "workspace"), **_errors(404)}},
            "delete": {"summary": "delete a workspace", "parameters": [{"name": "force", "in": "query", "schema": {"type": "boolean"}}],
                       "responses": {"200": _json(_ref("Workspace"), "deleted"), **_errors(400, 404, 409)}},
        },
        "/workspaces/{id}/files": {
            "parameters": [ID],
            "post": {"summary": "add or replace files", "requestBody": UPLOAD,
                     "responses": {"200": _json(_ref("Workspace"), "updated"), **_errors(400, 404, 413, 507)}},
        },
        "/workspaces/{id}/files/{path}": {
            "parameters": [ID, {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "download a file", "responses": {
                "200": {"description": "the file's bytes", "content": {"application/octet-stream": {}}}, **_errors(400, 404)}},
        },
        "/logs/{id}": {
            "parameters": [ID],
            "get": {
                "summary": "an object's or workspace's log: SSE with Accept: text/event-stream, else text",
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}, "description": text} for n, text in (
                    ("tail", "last N lines first, or `all` (default 100; all with since_time)"),
                    ("since", "lines after this sequence number (as Last-Event-ID)"),
                    ("since_time", "lines at or after this RFC 3339 time"),
                    ("until_time", "lines at or before this RFC 3339 time; a follow ends when it comes"),
                    ("follow", "keep streaming new lines (default: true for SSE)"),
                    ("part", "a Flow's part only, `NAME/REPLICA` (`NAME`: replica 0) as its lines are marked in the Flow's log"))],
                "responses": {"200": {"description": "log lines", "content": {"text/event-stream": {}, "text/plain": {}}},
                              **_errors(400, 404)},
            },
        },
        "/metrics": {"get": {"summary": "the daemon, its objects, logs and HTTP requests in Prometheus' text format",
                             "responses": {"200": {"description": "text exposition format 0.0.4",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/events": {"get": {"summary": "every object's state changes (SSE)",
                            "responses": {"200": {"description": "events", "content": {"text/event-stream": {}}}}}},
    }
    for kind in KINDS.values():
        paths.update(_kind_paths(kind.plural, kind.name))
    paths["/flows/{id}/executors/{name}"] = {
        "parameters": [ID, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "patch": {"summary": "rolling update or scale of one executor: its replicas replaced one at a time on their ports (`400` for one on another daemon: not supported yet)",
                  "parameters": [WAIT], "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("UpdateExecutor")}}},
                  "responses": {"200": _json(_ref("Object"), "updated"), "202": _json(_ref("Object"), "updating (wait=false)"),
                                **_errors(400, 404, 409, 422)}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jinad", "version": __version__,
                 "description": "Deploy and manage Jina Flows, Pods and Peas over REST."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "query": {"type": "apiKey", "in": "query", "name": "token"}},
        },
        "security": [{"bearer": []}, {"query": []}],
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
