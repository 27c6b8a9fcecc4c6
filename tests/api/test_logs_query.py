import pytest


@pytest.mark.parametrize("query", [
    "since_time=yesterday",
    "until_time=2026-01-01T00:00:00",  # no time zone
    "since_time=0001-01-01T00:00:00%2B01:00",  # before the first time there is, in UTC
    "since_time=9999-12-31T23:59:59.9999Z",  # rounded up to the millisecond: past the last
    "until_time=",
])
async def test_a_bad_time_is_a_400_that_says_so(client, query):
    ws = await (await client.post("/workspaces")).json()
    resp = await client.get(f"/logs/{ws['id']}?follow=false&{query}")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request" and query.split("=")[0] in body["message"]


async def test_a_window_with_nothing_in_it_ends_at_once(client):
    ws = await (await client.post("/workspaces")).json()
    resp = await client.get(f"/logs/{ws['id']}?since_time=2026-01-01T00:00:00.5%2B01:00&until_time=2026-01-01T00:00:00Z")
    assert resp.status == 200 and await resp.text() == ""


@pytest.mark.parametrize("query", ["follow=maybe", "follow=2"])
async def test_a_true_false_query_value_that_is_neither_is_a_400_that_names_it(client, query):
    ws = await (await client.post("/workspaces")).json()
    for accept in ("text/plain", "text/event-stream"):  # before, each read it its own way
        resp = await client.get(f"/logs/{ws['id']}?{query}", headers={"Accept": accept})
        assert resp.status == 400 and "query follow" in (await resp.json())["message"]
    resp = await client.delete(f"/workspaces/{ws['id']}?force=perhaps")
    assert resp.status == 400 and "query force" in (await resp.json())["message"]


async def test_head_of_an_event_stream_answers_as_its_get_would_without_a_stream(client):
    ws = await (await client.post("/workspaces")).json()
    for path, headers in ((f"/logs/{ws['id']}", {"Accept": "text/event-stream"}), ("/events", {})):
        resp = await client.head(path, headers=headers)
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
