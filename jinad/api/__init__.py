"""The HTTP layer: routes, request parsing, auth, errors and SSE framing over the managers."""
