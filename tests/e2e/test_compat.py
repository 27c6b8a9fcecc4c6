"""Flow YAMLs of the kinds Jina's own tests use, run once under bare `jina flow` and once
through jinad, asked the same requests with Jina's own Client: the answers, and the executors
each request passed through, must be the same (issue 19).

Every executor appends its name to each document's text (tests/executors/compat/compat.py),
and Jina returns each request's route; `/boom` makes the first executor raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXECUTORS, form, free_port, wait_until

COMPAT = EXECUTORS / "compat"
JINA = Path(sys.executable).parent / "jina"
TEXTS = ["ab", "abcdef", "xyz"]
START_TIMEOUT_S = 60
# case -> (its Flow YAML, requests as (endpoint, protocol), what doc "ab" comes back as for "/")
CASES = {
    "dag_when": ("dag.yml", [("/", "grpc"), ("/boom", "grpc")], "ab|first|short|last"),
    "deployments_replicas": ("deployments.yml", [("/", "grpc"), ("/", "grpc"), ("/boom", "grpc")], "ab|one|two"),
    "shards_polling_before_after": ("shards.yml", [("/", "grpc"), ("/all", "grpc"), ("/boom", "grpc")],
                                    "ab|before|sharded|after1"),
    # Not /boom over websocket: Jina 3.34's websocket Client loses an executor's error about
    # every other time (it answers no documents instead), under bare `jina flow` as well.
    "protocols_executor_yaml": ("protocols.yml", [("/", "grpc"), ("/boom", "grpc"), ("/", "http"), ("/boom", "http"),
                                                  ("/", "websocket")], "ab|from-yaml|overridden"),
    # jinad runs each replica as a part of its own: what an entry says must reach every one (not
    # `/` with `uses_requests`: Jina 3.34 answers it one way or another from run to run, bare too).
    "replica_settings": ("settings.yml", [("/other", "grpc"), ("/other", "http"), ("/other", "grpc")], ""),
}

# case -> (endpoint, text every doc must end with) that both Flows must answer before the
# comparison: Jina's head may dial a shard before it binds, and that gRPC channel then backs off
# for about a second, past Jina's own ready line (seen under load, bare `jina flow` as well).
ALL_SHARDS = {"shards_polling_before_after": ("/all", "|after2")}

# Executors given a port under an old name (`port_in`) by the test: jinad must use it.
FIXED_PORTS = {"deployments_replicas": ["one"]}


def ask(port: int, protocol: str, on: str) -> dict:
    """One request with Jina's Client: the documents and route of the answer, or its error."""
    from docarray import DocList
    from docarray.documents import TextDoc
    from jina import Client
    from jina.excepts import BadServer

    client = Client(host="127.0.0.1", port=port, protocol=protocol)
    docs = DocList[TextDoc]([TextDoc(id=text, text=text) for text in TEXTS])
    try:
        responses = client.post(on, inputs=docs, return_type=DocList[TextDoc], return_responses=True)
    except BadServer as exc:  # gRPC: the executor's exception
        status = exc.args[0].status
        return {"error": (status.exception.name, list(status.exception.args), status.exception.executor)}
    except Exception as exc:  # HTTP, websocket: the gateway's message
        return {"error": (type(exc).__name__, str(exc))}
    return {
        "docs": sorted((doc.id, doc.text) for response in responses for doc in response.docs),
        # The order of parallel branches in a route is the order they finished in.
        "route": sorted(route.executor for response in responses for route in response.routes),
    }


async def every_shard_answers(port: int, on: str, ending: str) -> None:
    async def answered():
        answer = await asyncio.to_thread(ask, port, "grpc", on)
        return all(text.endswith(ending) for _, text in answer.get("docs", [("", "")]))

    await wait_until(answered, 15, f"every shard behind port {port} to answer")


def ready(ports: dict[str, int]) -> bool:
    from jina import Client

    return all(Client(host="127.0.0.1", port=port, protocol=protocol).is_flow_ready(timeout=1.0)
               for protocol, port in ports.items())


class BareFlow:
    """`jina flow --uses` in a copy of the folder, its gateway ports fixed by the test."""

    def __init__(self, folder: Path, filename: str) -> None:
        self.folder = folder
        flow = yaml.safe_load((folder / filename).read_text())
        gateway = flow.setdefault("with", {})
        protocols = gateway.get("protocol", "grpc")
        protocols = protocols if isinstance(protocols, list) else [protocols]
        self.ports = {protocol: free_port() for protocol in protocols}
        gateway["port"] = list(self.ports.values()) if len(protocols) > 1 else self.ports[protocols[0]]
        (folder / "bare.yml").write_text(yaml.safe_dump(flow, sort_keys=False))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "HOME": str(self.folder), "JINA_LOG_NO_COLOR": "1"}
        with open(self.folder / "bare.log", "wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                str(JINA), "flow", "--uses", "bare.yml", cwd=self.folder, env=env, stdout=out,
                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)

        async def serving() -> bool:
            if self.proc.returncode is not None:
                raise AssertionError(f"bare jina flow ended:\n{(self.folder / 'bare.log').read_text()[-3000:]}")
            return await asyncio.to_thread(ready, self.ports)

        await wait_until(serving, START_TIMEOUT_S, "bare jina flow to serve", interval=0.1)

    async def stop(self) -> None:
        """SIGTERM its process group, then SIGKILL what is left, as jinad stops a Flow."""
        if self.proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: not _group_alive(self.proc.pid), grace, "bare jina flow to end")
                return
        raise AssertionError(f"bare jina flow {self.proc.pid} left processes running")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def jinad_flow(http, daemon, folder: Path, filename: str) -> dict:
    """The Flow started by jinad from the files of the suite."""
    parts = [("files", path.name, path) for path in sorted(folder.iterdir())
             if path.suffix in (".py", ".yml") and path.stem != "bare"]
    async with http.post(daemon.url + "/workspaces", data=form(*parts)) as resp:
        assert resp.status == 201, await resp.text()
        ws = (await resp.json())["id"]
    async with http.post(daemon.url + "/flows", json={"workspace_id": ws, "filename": filename}) as resp:
        flow = await resp.json()
        assert resp.status == 201, flow
    return flow


def gateway_ports(flow: dict, filename: str) -> dict[str, int]:
    """A Flow's gateway ports by protocol, as jinad reports them."""
    gateway = yaml.safe_load((COMPAT / filename).read_text()).get("with", {}).get("protocol", "grpc")
    protocols = gateway if isinstance(gateway, list) else [gateway]
    names = ["gateway"] + [f"gateway-{protocol}" for protocol in protocols[1:]]
    assert set(names) <= set(flow["ports"]), flow["ports"]
    return {protocol: flow["ports"][name] for protocol, name in zip(protocols, names)}


def fix_old_port_key(folder: Path, filename: str, executor: str) -> int:
    """Give an executor a port under the old name `port_in`; the port."""
    flow = yaml.safe_load((folder / filename).read_text())
    port = free_port()
    next(e for e in flow.get("executors", flow.get("deployments")) if e["name"] == executor)["port_in"] = port
    (folder / filename).write_text(yaml.safe_dump(flow, sort_keys=False))
    return port


@pytest.mark.parametrize("case", list(CASES))
async def test_a_flow_answers_through_jinad_as_under_bare_jina(http, daemon, tmp_path, case):
    filename, asks, expected = CASES[case]
    folder = tmp_path / "bare"
    shutil.copytree(COMPAT, folder)
    fixed = {name: fix_old_port_key(folder, filename, name) for name in FIXED_PORTS.get(case, [])}
    bare = BareFlow(folder, filename)
    try:
        flow, _ = await asyncio.gather(jinad_flow(http, daemon, folder, filename), bare.start())
        assert {name: flow["ports"][name] for name in fixed} == fixed  # Jina itself drops an executor's port_in
        ours = gateway_ports(flow, filename)
        if case in ALL_SHARDS:
            await asyncio.gather(*(every_shard_answers(port, *ALL_SHARDS[case]) for port in (bare.ports["grpc"], ours["grpc"])))
        for on, protocol in asks:
            theirs_answer = await asyncio.to_thread(ask, bare.ports[protocol], protocol, on)
            ours_answer = await asyncio.to_thread(ask, ours[protocol], protocol, on)
            assert ours_answer == theirs_answer, (on, protocol)
            if on == "/":
                assert dict(ours_answer["docs"])["ab"] == expected, ours_answer
            elif on == "/boom":
                assert "refuses 3 docs" in str(ours_answer["error"]), ours_answer
    finally:
        await bare.stop()
