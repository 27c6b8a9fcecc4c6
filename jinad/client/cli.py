"""`jinad <command>`: client commands for people at a terminal (plain `jinad` runs the daemon).

    jinad status                                  the daemon, its Jina and the machine
    jinad ping [-c N] [--timeout S]               round trips to the daemon (run on one daemon's
                                                  machine with --host of another: their link)
    jinad ls [--kind flow|pod|pea|workspace]      every object and workspace
    jinad get ID                                  one object or workspace
    jinad workspace upload DIR                    a folder as a new workspace; prints its id
    jinad workspace ls
    jinad workspace rm ID [--force]
    jinad flow create FLOW.yml [--dir DIR] [--restart POLICY] [--no-wait]
    jinad pod create --workspace ID --uses X [--py-modules a.py ...] [--uses-with JSON] [--replicas N] [--shards N]
    jinad pea create --workspace ID --uses X [--py-modules a.py ...] [--uses-with JSON]
    jinad logs ID [-f/--follow] [--tail N|all] [--since 10m|TIME] [--until TIME] [-t/--timestamps]
                                                  lines as they come; -f until the object ends
    jinad rm ID                                   any id; a workspace goes with its objects
    jinad restart ID
    jinad ui                                      the dashboard's URL (with the token)
    jinad context add NAME URL [--token T]        name a daemon; also: context ls, use NAME, rm NAME

Every command but `context` takes `--host URL` / $JINAD_HOST, `--token` / $JINAD_TOKEN,
`--context NAME` / $JINAD_CONTEXT and `--json` (the daemon's JSON instead of tables; one
document a line for logs). Which daemon and token (see contexts.py): flags, then the
environment, then the current context, then the local daemon -- the one whose home is
`--home DIR` / $JINAD_WORKSPACE / ~/.jinad, found at the URL it wrote there, with the token it
keeps there when this user can read it. Creating, uploading and removing print the id, so
`ID=$(jinad pea create ...)` works. Progress (bytes sent, seconds waited) goes to stderr, and
only when stderr is a terminal.

Exit codes:
    0    success
    1    the daemon answered an error: its code and message on stderr (and the log tail of a
         failed start; with --json, the daemon's error document)
    2    usage error (an unknown context among them)
    3    the daemon cannot be reached
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, TextIO
from urllib.parse import quote

import aiohttp

from .. import local, tls
from ..states import RestartPolicy
from . import contexts
from .api import PLURAL, Client, JinadError, kind_of, network_reason
from .contexts import ContextError, Contexts, Target

KINDS = tuple(PLURAL)
ALL_KINDS = (*KINDS, "workspace")
OBJECT_COLUMNS = ("ID", "KIND", "STATE", "ADDRESS", "RESTARTS", "CPU", "RSS", "AGE")
WORKSPACE_COLUMNS = ("ID", "STATE", "FILES", "SIZE", "AGE")
PART_COLUMNS = ("PART", "KIND", "STATE", "ADDRESS", "PID", "RESTARTS", "RSS")
# Request-body fields a create command may set; None (not given) leaves the daemon's default.
CREATE_FIELDS = ("workspace_id", "uses", "py_modules", "uses_with", "replicas", "shards", "restart")
CONTEXT_COLUMNS = ("", "NAME", "URL", "TOKEN")
EXIT_DAEMON_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130
# --since 10m, 1h30m, 2d: a time this long ago (as `docker logs --since`).
DURATION_PART = r"(\d+(?:\.\d+)?)([smhd])"
SECONDS_OF_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# ---- human output ---------------------------------------------------------------------------

def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def human_seconds(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    began = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))  # Python 3.10 wants the offset
    return human_seconds((datetime.now(timezone.utc) - began).total_seconds())


def table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns aligned on the widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (headers, *rows))


def details(doc: dict) -> str:
    """One `key  value` line a field; nested values as compact JSON."""
    width = max(map(len, doc), default=0)
    return "\n".join(f"{key.ljust(width)}  {v if isinstance(v, str) else json.dumps(v)}" for key, v in doc.items())


def object_row(doc: dict) -> tuple[str, ...]:
    """A row of OBJECT_COLUMNS for a Flow, Pod, Pea or workspace."""
    if kind_of(doc["id"]) == "workspace":
        return (doc["id"], "workspace", doc["state"], "-", "-", "-", "-", age(doc.get("created_at")))
    used = doc.get("resources") or {}
    cpu = used.get("cpu_percent")
    return (doc["id"], doc["kind"], doc["state"], doc.get("address") or "-", str(doc.get("restarts", 0)),
            "-" if cpu is None else f"{cpu:.0f}%", human_bytes(used.get("memory_rss")), age(doc.get("created_at")))


def workspace_row(ws: dict) -> tuple[str, ...]:
    return (ws["id"], ws["state"], str(len(ws.get("files", []))), human_bytes(ws.get("size")), age(ws.get("created_at")))


def render_status(status: dict) -> str:
    daemon, system = status["jinad"], status["system"]
    memory, disk = system["memory"], system["disk"]
    counts = {kind: ", ".join(f"{state} {n}" for state, n in status.get(kind, {}).items()) or "none" for kind in PLURAL.values()}
    return details({
        "jinad": f"{daemon['version']}, pid {daemon['pid']}, up {human_seconds(daemon['uptime_s'])}, {daemon['host']}:{daemon['port']}",
        "jina": status["jina"]["version"] or "not installed",
        "cpu": f"{system['cpu_percent']:.0f}%",
        "memory": f"{human_bytes(memory['used'])} of {human_bytes(memory['total'])} used",
        "disk": f"{human_bytes(disk['used'])} of {human_bytes(disk['total'])} used",
        "workspaces": str(status["workspaces"]),
        **counts,
    })


def id_of(doc: dict) -> str:
    return doc["id"]


# ---- progress ---------------------------------------------------------------------------------

class Progress:
    """One line on stderr while a request runs (spinner, seconds, bytes sent); only on a TTY."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.sent = 0

    def trace(self) -> aiohttp.TraceConfig:
        """Counts the request-body bytes a session sends."""
        async def count(session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestChunkSentParams) -> None:
            self.sent += len(params.chunk)

        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(count)
        return trace

    @contextlib.asynccontextmanager
    async def showing(self, label: str) -> AsyncIterator[None]:
        if not self.stream.isatty():
            yield
            return
        self.sent = 0
        drawing = asyncio.create_task(self._draw(label))
        try:
            yield
        finally:
            drawing.cancel()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    async def _draw(self, label: str) -> None:
        began = time.monotonic()
        for frame in itertools.cycle(self.FRAMES):
            sent = f", {human_bytes(self.sent)} sent" if self.sent else ""
            self.stream.write(f"\r{frame} {label} {time.monotonic() - began:.0f}s{sent}\x1b[K")
            self.stream.flush()
            await asyncio.sleep(0.1)


# ---- commands ---------------------------------------------------------------------------------

@dataclass
class Context:
    """What a command works with: the client, its arguments and the progress line."""

    jd: Client
    args: argparse.Namespace
    progress: Progress
    target: Target

    def show(self, data: Any, render: Callable[[Any], str]) -> None:
        print(json.dumps(data) if self.args.json else render(data), flush=True)

    def create_body(self) -> dict:
        return {name: value for name in CREATE_FIELDS if (value := getattr(self.args, name, None)) is not None}


async def cmd_status(ctx: Context) -> None:
    ctx.show(await ctx.jd.status(), render_status)


PING_PAUSE_S = 0.2  # between two round trips of `jinad ping`


async def cmd_ping(ctx: Context) -> None:
    """Round trips of GET / to the daemon, each printed as it comes, then their summary."""
    timeout = aiohttp.ClientTimeout(total=ctx.args.timeout)
    times = []
    for n in range(ctx.args.count):
        if n:
            await asyncio.sleep(PING_PAUSE_S)
        began = time.perf_counter()
        await ctx.jd.request("GET", "/", timeout=timeout)
        times.append(round((time.perf_counter() - began) * 1000, 2))
        if not ctx.args.json:
            print(f"{ctx.jd.url}: answer {n + 1} in {times[-1]:.1f} ms", flush=True)
    summary = {"url": ctx.jd.url, "round_trips_ms": times, "min_ms": min(times), "avg_ms": round(sum(times) / len(times), 2),
               "max_ms": max(times)}
    ctx.show(summary, lambda s: f"{len(times)} round trips: min {s['min_ms']:.1f} / avg {s['avg_ms']:.1f} / max {s['max_ms']:.1f} ms")


async def cmd_ls(ctx: Context) -> None:
    kinds = [ctx.args.kind] if ctx.args.kind else ALL_KINDS
    lists = await asyncio.gather(*(ctx.jd.workspaces() if kind == "workspace" else ctx.jd.list(kind) for kind in kinds))
    ctx.show([doc for docs in lists for doc in docs], lambda docs: table(OBJECT_COLUMNS, [object_row(d) for d in docs]))


async def cmd_get(ctx: Context) -> None:
    ctx.show(await ctx.jd.get(ctx.args.id), render_object)


def render_object(doc: dict) -> str:
    """Its fields; a Flow's parts as a table under them."""
    parts = doc.get("parts")
    if not parts:
        return details(doc)
    rows = [(f"{p['name']}/{p['replica']}", p["kind"], p["state"] or "-", f"{p['host']}:{p['port']}", "-" if p["pid"] is None else str(p["pid"]),
             "-" if p["restarts"] is None else str(p["restarts"]), human_bytes((p.get("resources") or {}).get("memory_rss")))
            for p in parts]
    return details({k: v for k, v in doc.items() if k != "parts"}) + "\n\n" + table(PART_COLUMNS, rows)


async def cmd_workspace_upload(ctx: Context) -> None:
    async with ctx.progress.showing(f"uploading {ctx.args.dir}"):
        ws = await ctx.jd.upload(ctx.args.dir)
    ctx.show(ws, id_of)


async def cmd_workspace_ls(ctx: Context) -> None:
    ctx.show(await ctx.jd.workspaces(), lambda wss: table(WORKSPACE_COLUMNS, [workspace_row(ws) for ws in wss]))


async def cmd_workspace_rm(ctx: Context) -> None:
    ctx.show(await ctx.jd.delete_workspace(ctx.args.id, force=ctx.args.force), id_of)


async def cmd_flow_create(ctx: Context) -> None:
    async with ctx.progress.showing(f"creating a flow from {ctx.args.yaml}"):
        flow = await ctx.jd.create_flow(ctx.args.yaml, folder=ctx.args.dir, wait=ctx.args.wait, **ctx.create_body())
    ctx.show(flow, id_of)


async def cmd_create(ctx: Context) -> None:
    async with ctx.progress.showing(f"starting a {ctx.args.kind}"):
        created = await ctx.jd.create(ctx.args.kind, wait=ctx.args.wait, **ctx.create_body())
    ctx.show(created, id_of)


async def cmd_logs(ctx: Context) -> None:
    a = ctx.args
    async for entry in ctx.jd.logs(a.id, tail=a.tail, follow=a.follow, since_time=a.since, until_time=a.until, part=a.part):
        if a.json:
            print(json.dumps(entry), flush=True)
        elif entry["event"] == "log":
            print(f"{entry['ts']} {entry['line']}" if a.timestamps else entry["line"], flush=True)


async def cmd_flow_update(ctx: Context) -> None:
    a = ctx.args
    changes = {name: value for name in ("uses", "py_modules", "uses_with", "envs", "replicas") if (value := getattr(a, name)) is not None}
    async with ctx.progress.showing(f"updating {a.executor} of {a.id}"):
        flow = await ctx.jd.update_executor(a.id, a.executor, wait=a.wait, **changes)
    ctx.show(flow, render_object)


async def cmd_rm(ctx: Context) -> None:
    ctx.show(await ctx.jd.delete(ctx.args.id), id_of)


async def cmd_restart(ctx: Context) -> None:
    async with ctx.progress.showing(f"restarting {ctx.args.id}"):
        restarted = await ctx.jd.restart(ctx.args.id, wait=ctx.args.wait)
    ctx.show(restarted, id_of)


def dashboard_url(target: Target) -> str:
    return f"{target.url}/ui" + (f"?token={quote(target.token, safe='')}" if target.token else "")


async def cmd_ui(ctx: Context) -> None:
    """Asks the daemon nothing: the URL is for a browser (print it, open it, share it)."""
    url = dashboard_url(ctx.target)
    ctx.show({"url": url}, lambda doc: doc["url"])


# ---- contexts: no daemon is asked --------------------------------------------------------------

def context_book() -> Contexts:
    return Contexts.load(contexts.contexts_file())


def context_rows(book: Contexts) -> list[dict]:
    """The contexts, `local` (the local daemon) first; tokens only as whether there is one."""
    here = local.find(local.home_dir())
    rows = [{"name": contexts.LOCAL, "url": here.url if here else contexts.DEFAULT_URL,
             "token": bool(here and here.token), "current": book.current is None}]
    for name, entry in book.entries.items():
        rows.append({"name": name, "url": entry["url"], "token": bool(entry.get("token")), "current": name == book.current})
    return rows


def cmd_context_ls(args: argparse.Namespace) -> None:
    rows = context_rows(context_book())
    print(json.dumps(rows) if args.json else table(CONTEXT_COLUMNS, [
        ("*" if r["current"] else "", r["name"], r["url"], "yes" if r["token"] else "-") for r in rows]), flush=True)


def cmd_context_add(args: argparse.Namespace) -> None:
    context_book().add(args.name, args.url, args.token, {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key})
    print(args.name)


def cmd_context_use(args: argparse.Namespace) -> None:
    context_book().use(args.name)
    print(args.name)


def cmd_context_rm(args: argparse.Namespace) -> None:
    context_book().remove(args.name)
    print(args.name)


# ---- arguments --------------------------------------------------------------------------------

def host_url(text: str) -> str:
    try:
        return contexts.daemon_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def moment(text: str) -> str:
    """`10m` (ago), `1h30m`, `2d`, or a date and time (RFC 3339; without a zone, local time),
    as the RFC 3339 UTC time the daemon takes."""
    if re.fullmatch(f"(?:{DURATION_PART})+", text):
        seconds = sum(float(n) * SECONDS_OF_UNIT[unit] for n, unit in re.findall(DURATION_PART, text))
        try:
            when = datetime.now(timezone.utc) - timedelta(seconds=seconds)
        except (OverflowError, ValueError):  # before year 1
            raise argparse.ArgumentTypeError(f"{text!r} reaches back before the first time there can be") from None
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a duration like 10m, 1h30m, 2d nor a time like "
                                             "2026-11-30T12:00:00Z") from None
        when = when.astimezone(timezone.utc)  # a time without a zone is local time, as for `docker logs`
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def id_type(*kinds: str) -> Callable[[str], str]:
    """An argparse type accepting ids of these kinds only."""
    def check(text: str) -> str:
        try:
            kind = kind_of(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if kind not in kinds:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {' or '.join(kinds)} id")
        return text

    return check


def path_type(want: Callable[[Path], bool], what: str) -> Callable[[str], Path]:
    def check(text: str) -> Path:
        if not want(Path(text)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return Path(text)

    return check


def tail_type(text: str) -> int | str:
    if text == "all":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines or 'all'")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 and below 3600")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object like '{{\"suffix\": \"!\"}}'")
    return value


ANY_ID = id_type(*ALL_KINDS)
OBJECT_ID = id_type(*KINDS)
WORKSPACE_ID = id_type("workspace")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("daemon and output")
    group.add_argument("--host", type=host_url, help="the daemon's URL (default: $JINAD_HOST, else the context's, "
                                                      f"else the local daemon's, else {contexts.DEFAULT_URL})")
    group.add_argument("--token", help="its bearer token (default: $JINAD_TOKEN, else the context's, else the "
                                       "local daemon's, read from its home)")
    group.add_argument("--context", metavar="NAME", help="a daemon named with `jinad context add` "
                                                          "(default: $JINAD_CONTEXT, else `jinad context use`'s)")
    group.add_argument("--home", metavar="DIR", help="the local daemon's home, as it was given with --workspace "
                                                      "(default: $JINAD_WORKSPACE, else ~/.jinad)")
    group.add_argument("--json", action="store_true", help="print the daemon's JSON (one document a line for logs)")
    group.add_argument("--tls-ca", metavar="FILE", help="PEM CA to verify an https:// daemon with (default: $JINAD_TLS_CA, "
                                                         "else the system's CAs)")
    group.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate, for a daemon that wants one "
                                                           "(default: $JINAD_TLS_CERT)")
    group.add_argument("--tls-key", metavar="FILE", help="PEM key of --tls-cert (default: $JINAD_TLS_KEY)")
    return common


def add_no_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", dest="wait", action="store_false", help="answer at once instead of when ready")


def add_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restart", choices=RestartPolicy.values(), help="restart policy (default: no)")
    add_no_wait(parser)


def add_runtime_options(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.set_defaults(kind=kind)
    parser.add_argument("--workspace", dest="workspace_id", type=WORKSPACE_ID, required=True, metavar="ID",
                        help="workspace with its files")
    parser.add_argument("--uses", required=True, help="the Executor class (or a YAML in the workspace)")
    parser.add_argument("--py-modules", nargs="+", metavar="FILE", help="Python files of the workspace to import")
    parser.add_argument("--uses-with", type=json_object, metavar="JSON", help="constructor arguments as a JSON object")
    if kind == "pod":
        parser.add_argument("--replicas", type=positive_int, metavar="N", help="copies of the Executor (default: 1)")
        parser.add_argument("--shards", type=positive_int, metavar="N", help="shards behind a head (default: 1)")
    add_start_options(parser)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="jinad", description="Talk to a jinad daemon (plain `jinad` starts one).",
                                     epilog="exit codes: 0 ok, 1 the daemon answered an error, 2 usage, 3 unreachable, 130 Ctrl-C")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(group: Any, name: str, run: Callable[[Context], Awaitable[None]], text: str) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    def noun(name: str, text: str) -> Any:
        return commands.add_parser(name, help=text).add_subparsers(title="actions", metavar="ACTION", required=True)

    command(commands, "status", cmd_status, "the daemon, its Jina and the machine")
    ping = command(commands, "ping", cmd_ping, "measure round trips to the daemon (the first one connects)")
    ping.add_argument("-c", "--count", type=positive_int, default=4, metavar="N", help="how many (default: 4)")
    ping.add_argument("--timeout", type=positive_number, default=5.0, metavar="S", help="seconds each may take (default: 5)")
    command(commands, "ls", cmd_ls, "list objects and workspaces").add_argument("--kind", choices=ALL_KINDS)
    command(commands, "get", cmd_get, "one object or workspace").add_argument("id", type=ANY_ID)
    logs = command(commands, "logs", cmd_logs, "print an object's (or a workspace install's) log")
    logs.add_argument("id", type=ANY_ID)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the object ends")
    logs.add_argument("--tail", type=tail_type, help="last N lines first, or 'all' (default: 100, all with --since)")
    logs.add_argument("--since", type=moment, metavar="WHEN", help="lines from this time on: 10m (ago), 1h30m, 2d, or RFC 3339")
    logs.add_argument("--until", type=moment, metavar="WHEN", help="lines up to this time; ends a follow there")
    logs.add_argument("--part", metavar="NAME/R", help="one part of a Flow only (its lines are marked [NAME/R])")
    logs.add_argument("-t", "--timestamps", action="store_true", help="each line after its time (RFC 3339, UTC)")
    command(commands, "rm", cmd_rm, "stop and remove an object (a workspace with its objects)").add_argument("id", type=ANY_ID)
    restart = command(commands, "restart", cmd_restart, "restart a Flow, Pod or Pea")
    restart.add_argument("id", type=OBJECT_ID)
    add_no_wait(restart)

    workspace = noun("workspace", "upload, list and remove workspaces")
    command(workspace, "upload", cmd_workspace_upload, "upload a folder as a new workspace").add_argument(
        "dir", type=path_type(Path.is_dir, "a folder"))
    command(workspace, "ls", cmd_workspace_ls, "list workspaces")
    remove = command(workspace, "rm", cmd_workspace_rm, "remove a workspace")
    remove.add_argument("id", type=WORKSPACE_ID)
    remove.add_argument("--force", action="store_true", help="stop and remove its objects first")

    flows = noun("flow", "create and update Flows")
    flow = command(flows, "create", cmd_flow_create, "a Flow from a local YAML in one upload")
    flow.add_argument("yaml", type=path_type(Path.is_file, "a file"), metavar="FLOW.yml")
    flow.add_argument("--dir", type=path_type(Path.is_dir, "a folder"), help="folder of files the Flow needs")
    add_start_options(flow)
    update = command(flows, "update", cmd_flow_update, "rolling update or scale of one executor: its replicas replaced "
                     "one at a time on their ports, while the others serve")
    update.add_argument("id", type=id_type("flow"), metavar="ID")
    update.add_argument("executor", metavar="EXECUTOR")
    update.add_argument("--uses", help="another Executor class (or a YAML in the workspace)")
    update.add_argument("--py-modules", nargs="+", metavar="F", help="Python files of the workspace to import instead")
    update.add_argument("--uses-with", type=json_object, metavar="JSON", help="constructor arguments as a JSON object")
    update.add_argument("--envs", type=json_object, metavar="JSON", help="environment variables as a JSON object")
    update.add_argument("--replicas", type=positive_int, metavar="N", help="scale to N replicas")
    add_no_wait(update)
    for kind, text in (("pod", "an Executor with replicas/shards"), ("pea", "a single Executor")):
        add_runtime_options(command(noun(kind, f"create {kind.title()}s"), "create", cmd_create, f"start {text}"), kind)
    command(commands, "ui", cmd_ui, "print the dashboard's URL, with the token (keep it to yourself)")

    def offline(group: Any, name: str, run: Callable[[argparse.Namespace], None], text: str) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run, offline=True)
        return sub

    book = noun("context", f"name daemons, as `docker context` (kept in {contexts.contexts_file()}, mode 0600)")
    offline(book, "ls", cmd_context_ls, "list contexts; * marks the one in use").add_argument(
        "--json", action="store_true", help="as JSON (tokens only as whether there is one)")
    add = offline(book, "add", cmd_context_add, "name a daemon")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", type=host_url, metavar="URL")
    add.add_argument("--token", help="its bearer token")
    add.add_argument("--tls-ca", metavar="FILE", help="PEM CA to verify its https:// URL with (kept as a path)")
    add.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate to show it (kept as a path)")
    add.add_argument("--tls-key", metavar="FILE", help="PEM key of --tls-cert (kept as a path)")
    offline(book, "use", cmd_context_use, f"use this daemon from now on ({contexts.LOCAL}: the local daemon)").add_argument(
        "name", metavar="NAME")
    offline(book, "rm", cmd_context_rm, "forget a context").add_argument("name", metavar="NAME")
    return parser


# ---- entry point ------------------------------------------------------------------------------

async def run(args: argparse.Namespace, target: Target, ssl_context: ssl.SSLContext | None = None) -> None:
    progress = Progress(sys.stderr)
    async with Client(target.url, target.token or "", trace_configs=[progress.trace()], ssl_context=ssl_context) as jd:
        await args.run(Context(jd, args, progress, target))


def hint_401(target: Target) -> str:
    """One line on what to do about a 401: where a token comes from, or which one was refused."""
    if target.token_from:
        return f"jinad: the token from {target.token_from} was refused by {target.url}; give the right one with --token"
    if target.local is not None:
        where = f"{target.local.token_path}, which only the daemon's user can read"
    else:
        where = "<home>/token on the daemon's machine"
    return (f"jinad: {target.url} wants a token: --token T, $JINAD_TOKEN or `jinad context add NAME {target.url} "
            f"--token T`; a daemon keeps the one it made in {where}")


def report(exc: JinadError, as_json: bool) -> None:
    """The daemon's error on stderr: its document with --json, else code, message and log tail."""
    if as_json:
        print(json.dumps(exc.body or {"error": exc.code, "message": exc.message}), file=sys.stderr)
        return
    print(f"jinad: {exc.code}: {exc.message}", file=sys.stderr)
    for line in exc.body.get("log_tail", []):
        print(f"  | {line}", file=sys.stderr)
    if exc.code == "failed_to_start" and "id" in exc.body:
        print(f"jinad: the whole log: jinad logs {exc.body['id']} --tail all", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    try:
        if getattr(args, "offline", False):
            args.run(args)
            return 0
        target = contexts.resolve(args.host, args.token, args.context, args.home)
    except (ContextError, ValueError) as exc:  # ValueError: $JINAD_HOST that is no URL
        print(f"jinad: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the contexts file could not be written
        print(f"jinad: {exc}", file=sys.stderr)
        return EXIT_DAEMON_ERROR
    try:
        # Flags, then the context's files, then JINAD_TLS_* (in tls.client_context).
        files = target.tls
        ssl_context = tls.client_context(args.tls_ca or files.get("tls_ca"), args.tls_cert or files.get("tls_cert"),
                                         args.tls_key or files.get("tls_key"))
    except OSError as exc:  # a file missing, or not PEM (ssl.SSLError), or a key of another certificate
        print(f"jinad: cannot use the TLS files given: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(run(args, target, ssl_context))
    except JinadError as exc:
        report(exc, args.json)
        if exc.status == 401 and not args.json:
            print(hint_401(target), file=sys.stderr)
        return EXIT_DAEMON_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `jinad logs ID | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        message = f"cannot reach the daemon at {target.url} (from {target.url_from}): {network_reason(exc)}"
        print(json.dumps({"error": "unreachable", "message": message}) if args.json else f"jinad: {message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0
