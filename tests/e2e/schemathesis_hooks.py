"""Hooks for the schemathesis run (SCHEMATHESIS_HOOKS): besides what the OpenAPI document
describes, draw the values an attack found that schemas never generate: JSON nested past the
limits, digits that are not ASCII or too many for int(), and path names that name no file or
are longer than a file system takes."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.hostile import nested

NUMBERS = ["²", "①", "٣", "9" * 5000, "-1", "1e3"]
# Long, but short enough that the request line stays within aiohttp's 8190 bytes once encoded.
NAMES = [".", "./", "n" * 300, "/".join(["d"] * 1500), "a/../../b"]
NESTED_FIELDS = ("uses_with", "envs", "py_modules", "restart")


def _or_hostile(value, hostile: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just(value), hostile)


@schemathesis.hook
def flatmap_query(ctx, query):
    keys = [key for key in ("tail", "since") if query and key in query]
    if not keys:
        return st.just(query)
    return _or_hostile(query, st.tuples(st.sampled_from(keys), st.sampled_from(NUMBERS)).map(lambda kv: {**query, kv[0]: kv[1]}))


@schemathesis.hook
def flatmap_path_parameters(ctx, parameters):
    if not parameters or "path" not in parameters:
        return st.just(parameters)
    return _or_hostile(parameters, st.sampled_from(NAMES).map(lambda name: {**parameters, "path": name}))


@schemathesis.hook
def flatmap_body(ctx, body):
    if not isinstance(body, dict) or "workspace_id" not in body and "uses" not in body:
        return st.just(body)
    # Past the daemon's limit (32); much deeper breaks schemathesis itself, tests/api goes to 700.
    deep = st.tuples(st.sampled_from(NESTED_FIELDS), st.sampled_from([40, 80]))
    return _or_hostile(body, deep.map(lambda fd: {**body, fd[0]: nested(fd[1])}))
