"""The daemon's front door: the token check, every error as JSON, and each request counted and
timed for `GET /metrics`, around every route's handler. Put around each handler as its route
is added, not as an aiohttp middleware: aiohttp runs middlewares through a chain of its own
(a cache lookup keyed by the app, a wrapper that sets `current_app`, one more coroutine each),
which cost a busy GET about as much as jinad's own work. Paths and methods without a route go
to `no_route`, registered last, which answers them as aiohttp would, through the same door.

The server cancels a handler whose client went away (`handler_cancellation`), so a stream
nobody reads ends at once and frees its memory. A change (any method but GET) runs to its
end all the same, shielded, as `docker rm` finishes when its client is interrupted: a half
done create or delete would leave an object nobody can clean up.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
from time import perf_counter
from typing import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from .auth import OPEN_PATHS, refusal
from .errors import error_answer

READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
# Seconds: from a cached GET (~40 µs) to a Flow's start (seconds) and long log streams.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_GONE = 499  # the status a request whose client went away is counted under (as nginx does)
ROUTE_OF_PATH = web.RequestKey("route_of_path", AbstractResource)  # set by `no_route` on a 405: the route whose path it was


class RouteStats:
    __slots__ = ("buckets", "seconds", "statuses")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one: over the largest bound
        self.seconds = 0.0
        self.statuses: dict[int, int] = {}


class HttpStats:
    """Requests by (method, route) -> status counts and a duration histogram. Per request: one
    dict lookup keyed by the route's resource object (no string work), a bisection of the
    bounds, three increments. Methods outside the usual ones count as `other`, so a client
    cannot grow the table."""

    __slots__ = ("routes",)

    def __init__(self) -> None:
        self.routes: dict[tuple[str, AbstractResource | None], RouteStats] = {}

    def observe(self, method: str, resource: AbstractResource | None, status: int, seconds: float) -> None:
        key = (method if method in METHODS else "other", resource)
        entry = self.routes.get(key)
        if entry is None:
            entry = self.routes[key] = RouteStats()
        entry.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        entry.seconds += seconds
        entry.statuses[status] = entry.statuses.get(status, 0) + 1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Guard = Callable[[Handler, str, "AbstractResource | None"], Handler]


def front_door(token: str, stats: HttpStats) -> Guard:
    """`guard(handler, method, resource)`: the handler of `resource`'s route for `method` ("*":
    any; resource None: no route), behind the door. What a route is is known when it is added,
    so a request is not asked (the token is not asked on the open paths either)."""
    expected = token.encode() if token else None
    observe = stats.observe

    def guard(handler: Handler, method: str, resource: AbstractResource | None) -> Handler:
        token_needed = expected if resource is None or resource.canonical not in OPEN_PATHS else None

        @functools.wraps(handler)
        async def answer(request: web.Request) -> web.StreamResponse:
            began = perf_counter()
            try:
                if token_needed is not None and (refused := refusal(request, token_needed)) is not None:
                    response = refused
                else:
                    response = await handler(request)
            except Exception as exc:
                response = error_answer(request, exc)
            except asyncio.CancelledError:  # its client went away (a stream, mostly): counted all the same
                observe(request.method, resource or request.get(ROUTE_OF_PATH), CLIENT_GONE, perf_counter() - began)
                raise
            # The route as aiohttp's resource object: its pattern is written only at a scrape.
            observe(request.method, resource or request.get(ROUTE_OF_PATH), response.status, perf_counter() - began)
            return response

        if method in READ_ONLY:
            return answer

        @functools.wraps(handler)
        async def shielded(request: web.Request) -> web.StreamResponse:
            if request.method in READ_ONLY:
                return await answer(request)
            return await asyncio.shield(answer(request))

        return shielded

    return guard


async def no_route(request: web.Request) -> web.StreamResponse:
    """A request no route takes: 405 with the methods of the routes its path has, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource and (methods := (await resource.resolve(request))[1]):
            allowed |= methods
            request[ROUTE_OF_PATH] = resource  # a 405 is counted under the route of its path
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_guarded(app: web.Application, routes: Iterable[web.RouteDef], guard: Guard) -> None:
    for route in routes:
        resource = app.router.add_resource(route.path)
        guarded = guard(route.handler, route.method, resource)
        resource.add_route(route.method, guarded)
        if route.method == "GET":  # as aiohttp's add_get does
            resource.add_route("HEAD", guarded)


def add_no_route(app: web.Application, guard: Guard) -> None:
    """After every other route: aiohttp tries the routes whose literal prefix a path has from the
    longest prefix down, and this one's is `/`. Counted as aiohttp's own 404/405 were: no route."""
    app.router.add_route("*", r"/{path:[\s\S]*}", guard(no_route, "*", None))  # a path with a newline too
