"""`GET /metrics` of a real daemon with a running Flow, a failed Pea and workspaces, parsed with
Prometheus' own parser; and the same states and counts from the CLI, `GET /status` and the
lists the dashboard draws its tables and sums from (test_ui.py checks the page itself)."""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import json

from jinad.client.sse import iter_events
from tests.conftest import wait_until
from tests.e2e.helpers import TOKEN, a_flow_and_a_failed_pea, authorized, counted, ok, scrape


async def test_metrics_of_a_flow_a_failed_pea_and_workspaces_agree_with_cli_and_lists(daemon_factory):
    daemon = daemon_factory("--token", TOKEN)
    async with authorized() as http:
        flow, pea_id = await a_flow_and_a_failed_pea(http, daemon)

        async def sampled():
            m = await scrape(http, daemon)
            return m if m["jinad_object_memory_rss_bytes"][("jinad_object_memory_rss_bytes", flow["id"], "flow")] > 0 else None

        # A follower of the Flow's log is counted while it reads.
        async with http.get(f"{daemon.url}/logs/{flow['id']}", headers={"Accept": "text/event-stream"}) as stream:
            await asyncio.wait_for(anext(iter_events(stream)), 30)
            m = await wait_until(sampled, 30, "a resource sample of the Flow")

        f, p = (flow["id"], "flow"), (pea_id, "pea")
        assert m["jinad_log_followers"][("jinad_log_followers", flow["id"])] == 1
        assert m["jinad_object_up"][("jinad_object_up", *f)] == 1 and m["jinad_object_up"][("jinad_object_up", *p)] == 0
        assert m["jinad_object_processes"][("jinad_object_processes", *f)] >= 2, "the gateway and the executor at least"
        assert m["jinad_object_cpu_percent"][("jinad_object_cpu_percent", *f)] >= 0
        for name in ("jinad_object_memory_rss_bytes", "jinad_object_processes", "jinad_object_cpu_percent"):
            assert m[name][(name, *p)] == 0, f"{name}: a failed Pea runs nothing"
        assert m["jinad_object_restarts"][("jinad_object_restarts_total", *f)] == 0
        assert m["jinad_log_lines"][("jinad_log_lines_total", pea_id)] > 0, "its traceback"
        requests = m["jinad_http_requests"]
        assert requests[("jinad_http_requests_total", "POST", "/flows", "201")] == 1
        assert requests[("jinad_http_requests_total", "POST", "/peas", "422")] == 1

        async def stream_counted():  # the follower above went away: its stream counts, as 499
            gone = ("jinad_http_requests_total", "GET", "/logs/{id}", "499")
            return (await scrape(http, daemon))["jinad_http_requests"].get(gone) == 1

        await wait_until(stream_counted, 10, "the stream whose client went away to be counted")
        assert m["jinad_info"] == {("jinad_info", importlib.metadata.version("jina"), "0.1.0"): 1}
        assert m["jinad_uptime_seconds"][("jinad_uptime_seconds",)] > 0

        # The same states and counts everywhere.
        expected = {("flow", "ready"): 1, ("pea", "failed"): 1, ("workspace", "ready"): 2}
        assert counted(m) == expected
        listed = collections.Counter()  # what the dashboard's tables and per-section sums are drawn from
        for plural in ("flows", "pods", "peas", "workspaces"):
            async with http.get(f"{daemon.url}/{plural}") as resp:
                listed.update((plural[:-1], doc["state"]) for doc in await resp.json())
        assert listed == expected
        env = {"JINAD_HOST": daemon.url, "JINAD_TOKEN": TOKEN}
        status = json.loads(await ok(None, "status", "--json", env=env))
        by_status = {(plural[:-1], state): n for plural in ("flows", "pods", "peas") for state, n in status[plural].items()}
        assert {**by_status, ("workspace", "ready"): status["workspaces"]} == expected
        rows = json.loads(await ok(None, "ls", "--json", env=env))
        assert collections.Counter((doc.get("kind", "workspace"), doc["state"]) for doc in rows) == expected
