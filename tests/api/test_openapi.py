import re

from jinad.app import create_app


def served_routes(app) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) for every route (each kind's routes are literal paths)."""
    return {(route.method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.resource.canonical))
            for route in app.router.routes() if route.method not in ("HEAD", "*")}


def documented_routes(doc) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method != "parameters"}


async def test_document_and_routes_match_both_ways(client, config):
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert served_routes(create_app(config)) == documented_routes(doc)


async def test_document_is_open_with_auth_on(aiohttp_client, config):
    secured = await aiohttp_client(create_app(config.replace(token="t")))
    assert (await secured.get("/openapi.json")).status == 200
