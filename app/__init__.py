"""imgsim: image similarity search on PostgreSQL + pgvector.

The public Python API (``app.api``) is importable from the package: ``app.similar``,
``app.search``, ``app.ingest``, ``app.remove``, ``app.collections``, ``app.evaluate``,
``app.compare``, ``app.duplicates``, ``app.groups``, ``app.decide``. It loads on first use,
so that importing a submodule (the CLI, the settings) stays cheap.
"""
from __future__ import annotations

import importlib

__all__ = ["similar", "search", "ingest", "remove", "collections", "evaluate", "compare", "duplicates", "groups",
           "decide"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("app.api"), name)
    raise AttributeError(f"module 'app' has no attribute {name!r}")
