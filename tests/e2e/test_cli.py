"""The `jinad` client commands driven as a user would: the real CLI in a subprocess, against a
real daemon running real Jina."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import os
import pty
import signal

import pytest

from tests.conftest import EXECUTORS, free_port, wait_until
from tests.e2e.helpers import CHATTY, TIMEOUT, Run, ask_http, cli, make_folder, ok, run_cli, start_chatty


async def run_cli_on_a_tty(host: str, *argv: str) -> Run:
    """A CLI run whose stderr is a terminal (a pty), as at a prompt; err is what the terminal got."""
    master, slave = pty.openpty()
    reading = asyncio.create_task(asyncio.to_thread(read_until_closed, master))
    try:
        result = await run_cli(host, *argv, stderr=slave)
    finally:
        os.close(slave)
    return dataclasses.replace(result, err=await asyncio.wait_for(reading, 10))


def read_until_closed(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every writer closed the terminal
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


async def read_line(stream: asyncio.StreamReader) -> str:
    line = await asyncio.wait_for(stream.readline(), TIMEOUT)
    assert line, "the CLI ended its output early"
    return line.decode().rstrip("\n")


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that cuts each of its first connections (abruptly, both ways)
    once `cut_after` bytes went downstream; later connections pass untouched."""

    def __init__(self, upstream_port: int, cut_after: int, cuts: int) -> None:
        self.upstream_port, self.cut_after, self.cuts_left = upstream_port, cut_after, cuts
        self.cuts_done = 0

    async def __aenter__(self) -> "CuttingProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        budget = None
        if self.cuts_left > 0:
            budget, self.cuts_left = self.cut_after, self.cuts_left - 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        upstream = asyncio.create_task(self._pipe(reader, up_writer, None))
        try:
            if await self._pipe(up_reader, writer, budget):
                self.cuts_done += 1
        finally:
            upstream.cancel()
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, budget: int | None) -> bool:
        """Copy until EOF (False) or until `budget` bytes went through (True: cut)."""
        while data := await source.read(65536):
            if budget is not None and len(data) >= budget:
                sink.write(data[:budget])
                await sink.drain()
                return True
            budget = None if budget is None else budget - len(data)
            sink.write(data)
            await sink.drain()
        return False


async def test_workspace_upload_ls_and_rm(daemon, tmp_path):
    folder = make_folder(tmp_path / "ws", "upper.py")
    (folder / "data").mkdir()
    (folder / "data" / "notes.txt").write_text("hello\n")
    ws_id = (await ok(daemon.url, "workspace", "upload", str(folder))).strip()
    assert ws_id.startswith("jworkspace-")

    listed = json.loads(await ok(daemon.url, "ls", "--json"))
    assert [doc["id"] for doc in listed] == [ws_id]
    assert sorted(f["path"] for f in listed[0]["files"]) == ["data/notes.txt", "upper.py"]
    header, row = (await ok(daemon.url, "workspace", "ls")).splitlines()
    assert header.split() == ["ID", "STATE", "FILES", "SIZE", "AGE"]
    assert row.split()[:3] == [ws_id, "ready", "2"]

    assert (await ok(daemon.url, "workspace", "rm", ws_id)).strip() == ws_id
    assert json.loads(await ok(daemon.url, "ls", "--kind", "workspace", "--json")) == []


async def test_flow_create_get_logs_interrupt_and_rm(http, daemon):
    created = await run_cli_on_a_tty(daemon.url, "flow", "create", str(EXECUTORS / "flow_http.yml"), "--dir", str(EXECUTORS))
    assert created.code == 0, created
    flow_id = created.out.strip()
    assert flow_id.startswith("jflow-") and created.out == flow_id + "\n"  # progress went to the terminal only
    assert "creating a flow" in created.err and "sent" in created.err

    flow = json.loads(await ok(daemon.url, "get", flow_id, "--json"))
    assert flow["state"] == "ready"
    assert await ask_http(http, flow["ports"]["gateway"], "cli") == "CLI"
    assert "ready" in (await ok(daemon.url, "get", flow_id)).split()
    header, *rows = (await ok(daemon.url, "ls", "--kind", "flow")).splitlines()
    assert header.split() == ["ID", "KIND", "STATE", "ADDRESS", "RESTARTS", "CPU", "RSS", "AGE"]
    assert [row.split()[:4] for row in rows] == [[flow_id, "flow", "ready", flow["address"]]]
    # Its executor runs as a part of its own: its lines are marked with it.
    assert "[upper/0] upper executor ready" in (await ok(daemon.url, "logs", flow_id, "--tail", "all")).splitlines()

    async with cli(daemon.url, "logs", flow_id, "-f") as following:
        await read_line(following.stdout)
        following.send_signal(signal.SIGINT)
        await asyncio.wait_for(following.communicate(), 30)
    assert following.returncode == 130

    assert (await ok(daemon.url, "rm", flow_id)).strip() == flow_id
    gone = await run_cli(daemon.url, "get", flow_id)
    assert gone.code == 1 and "not_found" in gone.err


async def test_logs_follow_streams_every_line_once_through_dropped_connections(daemon, tmp_path):
    total = 30_000
    ws_id = (await ok(daemon.url, "workspace", "upload", str(make_folder(tmp_path / "ws", "chatty.py")))).strip()
    pea_id = (await ok(daemon.url, "pea", "create", "--workspace", ws_id, "--uses", "Chatty", "--py-modules", "chatty.py",
                       "--uses-with", json.dumps({"lines": total, "start_delay": 2.0}))).strip()
    # ~170 bytes of SSE a line: three cuts land well inside the stream.
    async with CuttingProxy(daemon.port, cut_after=400_000, cuts=3) as proxy, \
            cli(proxy.url, "logs", pea_id, "-f", "--tail", "all") as following:
        lines = []
        while not (lines and lines[-1].startswith("chatty done")):
            lines.append(await read_line(following.stdout))
        assert following.returncode is None, "-f keeps following while the object runs"
        assert proxy.cuts_done == 3
        numbers = [int(m.group(1)) for line in lines if (m := CHATTY.match(line))]
        assert numbers == list(range(total)), "every line exactly once, in order"

        assert (await ok(daemon.url, "rm", pea_id)).strip() == pea_id
        _, err = await asyncio.wait_for(following.communicate(), 30)
        assert following.returncode == 0, err  # the stream ended with the object


async def test_status_shows_the_jina_version(daemon):
    jina = importlib.metadata.version("jina")
    assert ["jina", jina] in [line.split() for line in (await ok(daemon.url, "status")).splitlines()]
    assert json.loads(await ok(daemon.url, "status", "--json"))["jina"]["version"] == jina


async def test_a_wrong_token_exits_1_with_unauthorized(daemon_factory):
    daemon = daemon_factory("--token", "s3cret")
    for token, hint in (("wrong", "the token from $JINAD_TOKEN was refused"), (None, "wants a token: --token T")):
        refused = await run_cli(daemon.url, "ls", token=token)
        assert refused.code == 1 and refused.out == ""
        error, said = refused.err.splitlines()  # the daemon's error, and one line on what to do
        assert error.startswith("jinad: unauthorized: ") and hint in said
    as_json = await run_cli(daemon.url, "ls", "--json", token="wrong")
    assert as_json.code == 1 and json.loads(as_json.err)["error"] == "unauthorized"
    assert await run_cli(daemon.url, "ls", token="s3cret") == Run(0, "ID  KIND  STATE  ADDRESS  RESTARTS  CPU  RSS  AGE\n", "")


async def test_an_unreachable_daemon_exits_3():
    result = await run_cli(f"http://127.0.0.1:{free_port()}", "status")
    assert result.code == 3 and result.out == ""
    assert "cannot reach the daemon" in result.err


@pytest.mark.parametrize("argv", [
    ["ls", "--kind", "job"],
    ["get", "nope"],
    ["flow"],
    ["flow", "create", "missing.yml"],
    ["pea", "create", "--uses", "Upper"],
    ["pod", "create", "--workspace", "jworkspace-1", "--uses", "Upper", "--replicas", "0"],
    ["logs", "jpea-1", "--tail", "many"],
    ["restart", "jworkspace-1"],
    ["status", "--host", "ftp://somewhere"],
])


async def test_usage_errors_exit_2(argv):
    result = await run_cli(f"http://127.0.0.1:{free_port()}", *argv)
    assert result.code == 2 and result.out == ""
    assert "usage: jinad" in result.err


async def test_logs_by_time_with_timestamps_as_docker_logs(http, daemon):
    pea = await start_chatty(http, daemon, 20, start_delay=0.1)
    everything = await wait_until(lambda: logs_json(daemon.url, pea["id"]), 60, "chatty's last line")
    lines = [entry for entry in everything if entry["event"] == "log"]
    stamps = sorted({entry["ts"] for entry in lines})
    since, until = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
    window = await ok(daemon.url, "logs", pea["id"], "--since", since, "--until", until, "-t")
    assert window.splitlines() == [f"{e['ts']} {e['line']}" for e in lines if since <= e["ts"] <= until]
    assert await ok(daemon.url, "logs", pea["id"], "--since", "10m") == "".join(e["line"] + "\n" for e in lines)
    # Following up to a time that has passed ends at once, though the Pea runs on; the last
    # line came after that time.
    assert await ok(daemon.url, "logs", pea["id"], "-f", "--until", stamps[-2], "--tail", "1") == ""
    refused = await run_cli(daemon.url, "logs", pea["id"], "--since", "yesterday")
    assert refused.code == 2 and "neither a duration" in refused.err


async def logs_json(url: str, object_id: str) -> list[dict] | None:
    """Every log entry as JSON, once chatty has printed its last line."""
    entries = [json.loads(line) for line in (await ok(url, "logs", object_id, "--tail", "all", "--json")).splitlines()]
    return entries if any(e.get("line", "").startswith("chatty done") for e in entries) else None
