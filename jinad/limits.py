"""`limits` of a create request: what may be capped and how a request writes it.

`{"memory": "200MiB", "cpus": 0.5, "pids": 64}`, each optional: memory as bytes or a size with
a unit (B, K/KiB, M/MiB, G/GiB, T/TiB are powers of 1024 as Docker's `--memory`; KB, MB, GB,
TB powers of 1000), cpus as a share of cores (`cpus: 1.5`, Docker's `--cpus`), pids as the most
processes and threads the object may hold at once (Docker's `--pids-limit`). They are kept
normalised (bytes, a float, an int) in the object's record and shown so in its JSON.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from .errors import BadRequest

LIMIT_KEYS = ("memory", "cpus", "pids")
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker's floor too: below it nothing starts
MIN_CPUS = 0.01  # the kernel's CFS quota floor is 1 ms per 100 ms period
UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3, "t": 1024**4, "tib": 1024**4,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
}
SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")  # ASCII digits: int() takes others too
# What the kernel's counters hold (memory.limit_in_bytes is a signed 64-bit number; pid_max is
# at most 2**22): past these a start would fail with a raw errno instead of a 400 now.
MAX_MEMORY_BYTES = 2 ** 62
MAX_PIDS = 2 ** 22


def parse_size(value: Any, what: str) -> int:
    """Bytes from a whole number or a string like "200MiB"; BadRequest for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := SIZE.fullmatch(value)) and match.group(2).lower() in UNITS:
        size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    else:
        raise BadRequest(f"{what} must be a number of bytes or a size like \"200MiB\" or \"2GiB\", not {value!r}")
    if size < MIN_MEMORY_BYTES:
        raise BadRequest(f"{what} must be at least {MIN_MEMORY_BYTES // (1024 * 1024)}MiB, not {value!r}")
    if size > MAX_MEMORY_BYTES:
        raise BadRequest(f"{what} must be at most {MAX_MEMORY_BYTES} bytes, not {value!r}")
    return size


def parse_limits(value: Any) -> dict:
    """The request's `limits`, checked and normalised ({} when absent); BadRequest if wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'limits' must be an object with any of {', '.join(LIMIT_KEYS)}, not {value!r}")
    unknown = sorted(set(value) - set(LIMIT_KEYS))
    if unknown:
        raise BadRequest(f"unknown limit(s): {', '.join(map(str, unknown))}; jinad caps {', '.join(LIMIT_KEYS)}")
    limits: dict[str, Any] = {}
    if value.get("memory") is not None:
        limits["memory"] = parse_size(value["memory"], "limits.memory")
    if value.get("cpus") is not None:
        cpus = value["cpus"]
        cores = os.cpu_count() or 1
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not MIN_CPUS <= cpus < math.inf:
            raise BadRequest(f"limits.cpus must be a number of cores of at least {MIN_CPUS}, not {cpus!r}")
        if cpus > cores:
            raise BadRequest(f"limits.cpus is {cpus:g}, but this machine has {cores} core(s)")
        limits["cpus"] = float(cpus)
    if value.get("pids") is not None:
        pids = value["pids"]
        if isinstance(pids, bool) or not isinstance(pids, int) or pids < 1:
            raise BadRequest(f"limits.pids must be a whole number of at least 1, not {pids!r}")
        if pids > MAX_PIDS:
            raise BadRequest(f"limits.pids must be at most {MAX_PIDS} (the kernel's pid_max), not {pids!r}")
        limits["pids"] = pids
    return limits
