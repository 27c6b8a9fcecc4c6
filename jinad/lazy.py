"""Modules an idle daemon does not need, loaded on their first use (an attribute read).

Each costs about a MB of resident memory the moment it is imported. Not importlib's LazyLoader:
on Python 3.11 two threads reading a lazy module's first attribute at once can both run it
(the daemon samples processes from worker threads); `import_module` holds the import lock."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:  # only for names not kept yet
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value
