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
