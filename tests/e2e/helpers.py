"""What the end-to-end tests share: requests to a daemon, its objects' states and processes,
log streams, CLI runs, workspace folders and metrics."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import re
import shutil
from asyncio.subprocess import PIPE, Process
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from jinad.client.sse import iter_events
from tests.conftest import EXECUTORS, JINAD, form

UPPER = ("files", "upper.py", EXECUTORS / "upper.py")
CHATTY = re.compile(r"^chatty (\d{8}) ")
SSE = {"Accept": "text/event-stream"}
UNRULY = ("files", "unruly.py", EXECUTORS / "unruly.py")
TIMEOUT = 180  # seconds any one CLI run may take (a Flow start is the slowest)
TOKEN = "s3cret"


async def make_workspace(http, daemon, *parts) -> str:
    async with http.post(daemon.url + "/workspaces", data=form(UPPER, *parts)) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["id"]


async def create(http, daemon, plural: str, body: dict, expect: int = 201, query: str = "") -> dict:
    async with http.post(f"{daemon.url}/{plural}{query}", json=body) as resp:
        answer = await resp.json()
        assert resp.status == expect, answer
        return answer


async def start_pea(http, daemon, file: tuple, body: dict, query: str = "", expect: int = 201) -> dict:
    """Upload `file` (a form part) as a workspace and create a Pea there from `body`."""
    async with http.post(daemon.url + "/workspaces", data=form(file)) as resp:
        assert resp.status == 201, await resp.text()
        ws = (await resp.json())["id"]
    return await create(http, daemon, "peas", {"workspace_id": ws, **body}, expect, query)


async def get(http, daemon, plural: str, object_id: str) -> dict:
    async with http.get(f"{daemon.url}/{plural}/{object_id}") as resp:
        assert resp.status == 200
        return await resp.json()


async def ask_http(http, port: int, text: str, host: str = "127.0.0.1") -> str:
    async with http.post(f"http://{host}:{port}/default", json={"data": [{"text": text}]}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["data"][0]["text"]


def alive(pids) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def tree_pids(leader: int) -> list[int]:
    return [p.pid for p in psutil.process_iter() if _pgid(p.pid) == leader]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def external_flow(http, daemon, port: int | list[int]) -> int:
    """Start a local Flow whose one executor is external at `port`; its gateway port."""
    async with http.post(daemon.url + "/flows", data=form(("flow", "ext.yml", external_flow_yaml(port)))) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["ports"]["gateway"]


def external_flow_yaml(port: int | list[int]) -> bytes:
    return (
        "jtype: Flow\nwith:\n  protocol: http\nexecutors:\n"
        f"  - name: remote\n    external: true\n    host: 127.0.0.1\n    port: {port}\n"
    ).encode()


async def in_state(http, daemon, plural, object_id, state, **expected):
    obj = await get(http, daemon, plural, object_id)
    if obj["state"] == state and all(obj[k] == v for k, v in expected.items()):
        return obj
    return None


async def start_chatty(http, daemon, lines: int, start_delay: float = 0.5, restart: str = "no") -> dict:
    return await start_pea(http, daemon, ("files", "chatty.py", EXECUTORS / "chatty.py"),
                           {"uses": "Chatty", "py_modules": ["chatty.py"], "restart": restart,
                            "uses_with": {"lines": lines, "start_delay": start_delay}})


async def read_stream(http, url: str, headers=None, stop_after: int | None = None, until_line: str | None = None):
    """(log events, other events) of one SSE connection, read until it ends or a condition."""
    logs, others = [], []
    async with http.get(url, headers={**SSE, **(headers or {})}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        async for event in iter_events(resp):
            if event.event != "log":
                others.append(event)
                if event.event == "end":
                    break
                continue
            entry = event.json()
            assert int(event.id) == entry["seq"]
            logs.append(entry)
            if stop_after is not None and len(logs) >= stop_after:
                break
            if until_line is not None and entry["line"].startswith(until_line):
                break
    return logs, others


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str


def cli_env(host: str | None, token: str | None = None, **extra: str) -> dict[str, str]:
    """This environment without JINAD_* settings (a context or home of the machine's user must
    not leak in), and with no contexts file; then the daemon to talk to and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}
    env.update(XDG_CONFIG_HOME="/nonexistent/jinad-tests", JINAD_WORKSPACE="/nonexistent/jinad-tests/home")
    return {**env, **({"JINAD_HOST": host} if host else {}), **({"JINAD_TOKEN": token} if token else {}), **extra}


@contextlib.asynccontextmanager
async def cli(host: str | None, *argv: str, token: str | None = None, stderr: int = PIPE,
              env: dict[str, str] | None = None) -> AsyncIterator[Process]:
    """The CLI as a running process; killed on the way out if it still runs."""
    proc = await asyncio.create_subprocess_exec(str(JINAD), *argv, stdout=PIPE, stderr=stderr,
                                                env=cli_env(host, token, **(env or {})))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_cli(host: str | None, *argv: str, token: str | None = None, stderr: int = PIPE,
                  env: dict[str, str] | None = None) -> Run:
    async with cli(host, *argv, token=token, stderr=stderr, env=env) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    return Run(proc.returncode, out.decode(), (err or b"").decode())


async def ok(host: str | None, *argv: str, env: dict[str, str] | None = None) -> str:
    """stdout of a CLI run that must succeed."""
    result = await run_cli(host, *argv, env=env)
    assert result.code == 0, result
    return result.out


def make_folder(path: Path, *names: str) -> Path:
    path.mkdir()
    for name in names:
        shutil.copy(EXECUTORS / name, path / name)
    return path


def fill(disk) -> Path:
    """Fill the disk up with one file; removing that file gives the room back."""
    filler = disk / "filler.bin"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 1048576)
                f.flush()
        except OSError:
            pass
    return filler


def authorized() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=aiohttp.ClientTimeout(total=180))


async def scrape(http, daemon) -> dict[str, dict]:
    """family -> {(sample name, *label values in label order): value}"""
    async with http.get(daemon.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {family.name: {(s.name, *(v for _, v in sorted(s.labels.items()))): s.value for s in family.samples}
            for family in text_string_to_metric_families(text)}


def counted(metrics: dict) -> collections.Counter:
    """(kind, state) -> how many, workspaces too, as the metrics say (zeros left out)."""
    found = collections.Counter({(kind, state): int(n) for (_, kind, state), n in metrics["jinad_objects"].items() if n})
    found.update({("workspace", state): int(n) for (_, state), n in metrics["jinad_workspaces"].items() if n})
    return found


async def a_flow_and_a_failed_pea(http, daemon) -> tuple[dict, str]:
    """A running Flow (with its own workspace) and a Pea that failed to start (with another)."""
    body = form(("flow", "flow.yml", EXECUTORS / "flow_http.yml"), ("files", "upper.py", EXECUTORS / "upper.py"))
    async with http.post(daemon.url + "/flows", data=body) as resp:
        assert resp.status == 201, await resp.text()
        flow = await resp.json()
    failed = await start_pea(http, daemon, ("files", "crash.py", EXECUTORS / "crash.py"), {"uses": "Crash", "py_modules": ["crash.py"]},
                             expect=422)
    return flow, failed["id"]


# ---- remote parts ----

def remote_flow(*executors: tuple[str, str, str]) -> bytes:
    """A Flow YAML of Upper executors, each (name, daemon URL, extra YAML lines) on a remote."""
    entries = "".join(
        f"  - name: {name}\n    uses: Upper\n    py_modules: upper.py\n    jinad: {url}\n{extra}"
        for name, url, extra in executors
    )
    return f"jtype: Flow\nwith:\n  protocol: http\nexecutors:\n{entries}".encode()


# ---- the dashboard in Chromium ----

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_TIMEOUT_MS = 30_000  # Playwright's deadline for one condition


async def open_page(browser, url: str):
    """A fresh page on `url`, collecting uncaught JS errors in `page.js_errors`."""
    page = await browser.new_page(viewport={"width": 1440, "height": 960})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    await page.goto(url, timeout=UI_TIMEOUT_MS)
    return page


async def expect_daemon_status(page) -> None:
    from playwright.async_api import expect

    await expect(page.locator("#st-jina")).to_have_text(re.compile(r"^\d+\.\d+"), timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#st-uptime")).to_have_text(re.compile(r"\d+s|\d+m"), timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=UI_TIMEOUT_MS)
