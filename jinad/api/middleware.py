"""The daemon's one middleware: the token check, every error as JSON, and each request
counted and timed for `GET /metrics`. One, not three: aiohttp wraps each middleware around
every request, which shows on a busy GET.

The server cancels a handler whose client went away (`handler_cancellation`), so a stream
nobody reads ends at once and frees its memory. A change (any method but GET) runs to its
end all the same, shielded, as `docker rm` finishes when its client is interrupted: a half
done create or delete would leave an object nobody can clean up.
"""

from __future__ import annotations

import asyncio
import bisect
from time import perf_counter

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from .auth import refusal
from .errors import error_answer

READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
# Seconds: from a cached GET (~40 µs) to a Flow's start (seconds) and long log streams.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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


def front_door(token: str, stats: HttpStats):
    expected = token.encode() if token else None
    observe = stats.observe

    async def answer(request: web.Request, handler) -> web.StreamResponse:
        began = perf_counter()
        try:
            if expected is not None and (refused := refusal(request, expected)) is not None:
                response = refused
            else:
                response = await handler(request)
        except Exception as exc:
            response = error_answer(request, exc)
        # The route as aiohttp's resource object: its pattern is written only at a scrape.
        observe(request.method, request.match_info.route.resource, response.status, perf_counter() - began)
        return response

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if request.method in READ_ONLY:
            return await answer(request, handler)
        return await asyncio.shield(answer(request, handler))

    return middleware
