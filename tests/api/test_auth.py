import asyncio
import json

import pytest

from jinad.app import create_app


@pytest.fixture
async def secured(aiohttp_client, config):
    return await aiohttp_client(create_app(config.replace(token="s3cret")))


async def test_liveness_stays_open(secured):
    assert (await secured.get("/")).status == 200


async def test_everything_else_needs_the_token(secured):
    resp = await secured.get("/status")
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    assert (await secured.get("/workspaces", headers={"Authorization": "Bearer wrong"})).status == 401


async def test_bearer_header_and_query_token_both_work(secured):
    assert (await secured.get("/status", headers={"Authorization": "Bearer s3cret"})).status == 200
    assert (await secured.get("/workspaces?token=s3cret")).status == 200


async def test_a_token_that_is_not_utf8_is_refused_as_json(secured):
    reader, writer = await asyncio.open_connection(secured.server.host, secured.server.port)
    writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"application/json" in head
    assert json.loads(body)["error"] == "unauthorized"
