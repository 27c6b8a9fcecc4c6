"""An async Python client for the whole REST contract; also how one daemon talks to another."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiohttp

from ..tls import client_context
from .sse import iter_events

PLURAL = {"flow": "flows", "pod": "pods", "pea": "peas"}
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


class JinadError(Exception):
    """An error answer of the daemon: its HTTP status and the contract's code and message."""

    def __init__(self, status: int, code: str, message: str, body: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body or {}


def network_reason(exc: BaseException) -> str:
    """Why a daemon could not be reached, in words: a timeout's own text is empty."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def kind_of(object_id: str) -> str:
    """`jflow-…` -> `flow`; ids carry their kind."""
    kind = object_id.split("-", 1)[0][1:]
    if kind not in PLURAL and kind != "workspace":
        raise ValueError(f"{object_id!r} is not a jinad id (jworkspace-…, jflow-…, jpod-…, jpea-…)")
    return kind


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative path, file) for every file under a folder, skipping hidden folders and caches."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts[:-1]):
            found.append((rel.as_posix(), path))
    return found


class Client:
    """`async with Client() as jd: await jd.status()`

    With no URL it talks to the daemon the `jinad` commands would (JINAD_HOST / JINAD_CONTEXT,
    the current context, else the local daemon). With no token (None; "" is "send none") and a
    URL that is the local daemon, it reads the token from that daemon's home, as those commands do.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 600.0,
                 trace_configs: list[aiohttp.TraceConfig] | None = None, *, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        if url is None or token is None:
            from .contexts import local_token, resolve  # not in a daemon, whose clients get both

            if url is None:
                target = resolve(token=token)
                url, token = target.url, target.token
                tls_ca, tls_cert, tls_key = (given or target.tls.get(name) for given, name in
                                             ((tls_ca, "tls_ca"), (tls_cert, "tls_cert"), (tls_key, "tls_key")))
            else:
                token = local_token(url)
        self.url = url.rstrip("/")
        self.token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._trace_configs = trace_configs  # e.g. the CLI's progress line counts bytes sent
        # https:// is verified against tls_ca (else $JINAD_TLS_CA, else the system's CAs), with a
        # client certificate from tls_cert/tls_key (else $JINAD_TLS_CERT/$JINAD_TLS_KEY) if any.
        self._ssl = ssl_context or client_context(tls_ca, tls_cert, tls_key)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout, trace_configs=self._trace_configs,
                                                  connector=connector)
        return self._session

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.url + path, **kwargs) as resp:
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = await resp.read()
            if resp.status >= 400:
                info = body if isinstance(body, dict) else {}
                raise JinadError(resp.status, info.get("error", "http_error"), info.get("message", f"HTTP {resp.status}"), info)
            return body

    # ---- daemon -----------------------------------------------------------------------------

    async def alive(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, JinadError):
            return await self.request("GET", "/") == {}
        return False

    async def status(self) -> dict:
        return await self.request("GET", "/status")

    # ---- workspaces ---------------------------------------------------------------------------

    @staticmethod
    def _form(files: Iterable[tuple[str, Path | bytes]], field: str = "files") -> aiohttp.FormData:
        data = aiohttp.FormData()
        for name, content in files:
            # Files are handed over open: aiohttp streams them, nothing is read whole.
            body = open(content, "rb") if isinstance(content, Path) else content
            data.add_field(field, body, filename=name, content_type="application/octet-stream")
        return data

    async def upload(self, source: Path | str | Iterable[tuple[str, Path | bytes]], workspace_id: str | None = None) -> dict:
        """Upload a folder (or (path, file) pairs) as a new workspace, or into an existing one."""
        files = folder_files(Path(source)) if isinstance(source, (str, os.PathLike)) else list(source)
        data = self._form(files) if files else None
        if workspace_id:
            return await self.request("POST", f"/workspaces/{workspace_id}/files", data=data)
        return await self.request("POST", "/workspaces", data=data)

    async def workspaces(self) -> list[dict]:
        return await self.request("GET", "/workspaces")

    async def workspace(self, workspace_id: str) -> dict:
        return await self.request("GET", f"/workspaces/{workspace_id}")

    async def download(self, workspace_id: str, path: str) -> bytes:
        return await self.request("GET", f"/workspaces/{workspace_id}/files/{path}")

    async def delete_workspace(self, workspace_id: str, force: bool = False) -> dict:
        return await self.request("DELETE", f"/workspaces/{workspace_id}" + ("?force=true" if force else ""))

    # ---- flows, pods, peas -----------------------------------------------------------------------

    async def create(self, kind: str, wait: bool = True, **body: Any) -> dict:
        """`create("pod", workspace_id=..., uses="Upper", py_modules=["upper.py"])`"""
        return await self.request("POST", f"/{PLURAL[kind]}" + ("" if wait else "?wait=false"), json=body)

    async def create_flow(self, yaml_path: Path | str, folder: Path | str | None = None, wait: bool = True, **options: Any) -> dict:
        """A Flow from a local YAML and, optionally, the folder of files it needs, in one request."""
        yaml_path = Path(yaml_path)
        data = self._form([(yaml_path.name, yaml_path)], field="flow")
        files = [(n, p) for n, p in folder_files(Path(folder)) if n != yaml_path.name] if folder else []
        for name, path in files:
            data.add_field("files", open(path, "rb"), filename=name, content_type="application/octet-stream")
        for name, value in options.items():
            data.add_field(name, value if isinstance(value, str) else json.dumps(value))
        return await self.request("POST", "/flows" + ("" if wait else "?wait=false"), data=data)

    async def list(self, kind: str) -> list[dict]:
        """Every object of a kind: "flow", "pod" or "pea" (workspaces: `workspaces()`)."""
        if kind not in PLURAL:
            raise ValueError(f"kind must be one of {', '.join(PLURAL)}, not {kind!r}")
        return await self.request("GET", f"/{PLURAL[kind]}")

    async def get(self, object_id: str) -> dict:
        kind = kind_of(object_id)
        if kind == "workspace":
            return await self.workspace(object_id)
        return await self.request("GET", f"/{PLURAL[kind]}/{object_id}")

    async def restart(self, object_id: str, wait: bool = True) -> dict:
        return await self.request("POST", f"/{PLURAL[kind_of(object_id)]}/{object_id}/restart" + ("" if wait else "?wait=false"))

    async def update_executor(self, flow_id: str, executor: str, wait: bool = True, **changes: Any) -> dict:
        """A rolling update or scale of one executor of a Flow: `update_executor(flow_id, "upper",
        uses_with={...}, replicas=3)`; any of uses, py_modules, uses_with, envs, replicas."""
        return await self.request("PATCH", f"/flows/{flow_id}/executors/{executor}" + ("" if wait else "?wait=false"), json=changes)

    async def delete(self, object_id: str) -> dict:
        kind = kind_of(object_id)
        if kind == "workspace":
            return await self.delete_workspace(object_id, force=True)
        return await self.request("DELETE", f"/{PLURAL[kind]}/{object_id}")

    # ---- logs ------------------------------------------------------------------------------------

    async def logs(self, object_id: str, tail: int | str | None = None, follow: bool = True,
                   since_time: str | None = None, until_time: str | None = None, part: str | None = None) -> AsyncIterator[dict]:
        """Log lines ({"seq","ts","stream","line"}) and state changes ({"state","exit_code"}) as
        they come; after a dropped connection it reconnects and resumes from the last line seen,
        so no line is lost or repeated. Ends when the daemon says the stream ended. `tail`: the
        daemon's default is 100, or all with `since_time`; times are RFC 3339. `part`: one part
        of a Flow (`NAME/REPLICA`)."""
        last_seq: int | None = None
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        asked = {"tail": tail, "since_time": since_time, "until_time": until_time, "part": part}
        while True:
            params = {"follow": "true" if follow else "false", **{k: str(v) for k, v in asked.items() if v is not None}}
            headers = {"Accept": "text/event-stream"}
            if last_seq is not None:
                headers["Last-Event-ID"] = str(last_seq)
            try:
                async with self.session.get(f"{self.url}/logs/{object_id}", params=params, headers=headers, timeout=timeout) as resp:
                    if resp.status >= 400:
                        body = await resp.json(content_type=None)
                        raise JinadError(resp.status, body.get("error", "http_error"), body.get("message", ""), body)
                    async for event in iter_events(resp):
                        failures = 0
                        if event.event == "end":
                            return
                        data = event.json()
                        if event.event == "log":
                            last_seq = data["seq"]
                        yield {"event": event.event, **data}
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if failures >= len(RECONNECT_DELAYS):
                raise ConnectionError(f"lost the log stream of {object_id} and could not reconnect to {self.url}")
            await asyncio.sleep(RECONNECT_DELAYS[failures])
            failures += 1
