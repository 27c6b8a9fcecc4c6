"""Modules an idle daemon does not need, loaded on their first use (an attribute read).

Each costs about a MB of resident memory the moment it is imported; the stdlib's LazyLoader
keeps `import x` at the top of the modules that use it, and loads x the first time they do."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
