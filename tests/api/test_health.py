import importlib.metadata
import os

from jinad import __version__


async def test_root_answers_empty_object(client):
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.json() == {}


async def test_status_reports_daemon_jina_system_and_counts(client):
    resp = await client.get("/status")
    assert resp.status == 200
    body = await resp.json()
    assert body["jinad"]["version"] == __version__
    assert body["jinad"]["pid"] == os.getpid()
    assert body["jinad"]["uptime_s"] >= 0
    assert body["jina"]["version"] == importlib.metadata.version("jina")
    assert body["system"]["memory"]["total"] > 0
    assert body["system"]["disk"]["free"] > 0
    assert body["workspaces"] == 0
    assert body["flows"] == body["pods"] == body["peas"] == {}


async def test_unknown_route_is_json_404(client):
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"] == "not_found"


async def test_wrong_method_is_json_405(client):
    resp = await client.put("/status")
    assert resp.status == 405
    body = await resp.json()
    assert body["error"] == "method_not_allowed"
    assert "PUT" in body["message"]
    assert "GET" in resp.headers["Allow"]


async def test_unknown_ids_are_404_for_every_kind(client):
    for path in ("/workspaces/jworkspace-00", "/flows/jflow-00", "/pods/jpod-00", "/peas/jpea-00"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert (await resp.json())["error"] == "not_found"
    resp = await client.delete("/flows/jflow-00")
    assert resp.status == 404
