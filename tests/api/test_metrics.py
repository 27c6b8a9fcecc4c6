from prometheus_client.parser import text_string_to_metric_families

from jinad.app import create_app

AUTH = {"Authorization": "Bearer s3cret"}
FAMILIES = {  # as the parser names them: a counter's family without its _total
    "jinad_objects", "jinad_workspaces", "jinad_object_cpu_percent", "jinad_object_memory_rss_bytes",
    "jinad_object_processes", "jinad_object_restarts", "jinad_object_up", "jinad_log_lines", "jinad_log_followers",
    "jinad_http_requests", "jinad_http_request_duration_seconds", "jinad_uptime_seconds", "jinad_info",
}


async def scrape(client) -> dict:
    resp = await client.get("/metrics", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(await resp.text())}


async def test_metrics_need_the_token_and_count_requests_by_route_pattern(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace(token="s3cret")))
    assert (await client.get("/metrics")).status == 401
    assert (await client.post("/workspaces", headers=AUTH)).status == 201
    assert (await client.get("/workspaces/jworkspace-0", headers=AUTH)).status == 404
    assert (await client.request("PROPFIND", "/nowhere", headers=AUTH)).status == 404
    assert (await client.patch("/workspaces/jworkspace-0", headers=AUTH)).status == 405
    families = await scrape(client)
    assert set(families) == FAMILIES
    requests = {tuple(s.labels[k] for k in ("method", "route", "status")): s.value for s in families["jinad_http_requests"].samples}
    assert requests == {("GET", "/metrics", "401"): 1, ("POST", "/workspaces", "201"): 1,
                        ("GET", "/workspaces/{id}", "404"): 1, ("other", "unmatched", "404"): 1,
                        ("PATCH", "/workspaces/{id}", "405"): 1}  # a 405 under the route of its path
    durations = families["jinad_http_request_duration_seconds"].samples
    counts = {s.labels["route"]: s.value for s in durations if s.name.endswith("_count")}
    infinite = {s.labels["route"]: s.value for s in durations if s.labels.get("le") == "+Inf"}
    assert counts == infinite == {"/metrics": 1, "/workspaces": 1, "/workspaces/{id}": 1, "unmatched": 1}
    assert {s.labels["state"]: s.value for s in families["jinad_workspaces"].samples} == {"ready": 1, "installing": 0, "failed": 0}
    assert len(families["jinad_objects"].samples) == 3 * 6 and not any(s.value for s in families["jinad_objects"].samples)
    assert families["jinad_uptime_seconds"].samples[0].value > 0
