"""Memory settings of the embedded server, sized to the machine.

The server's own defaults (``shared_buffers`` 128 MB) keep an index of a few hundred MB on the
operating system's cache at best; a big collection's index needs to stay in the server's buffers.
imgsim writes its settings to ``imgsim.conf`` in the data folder, included from
``postgresql.conf``, so they take effect at the server's next start and a user's own edits to
``postgresql.conf`` are kept (and win when made after the include line).
"""
from __future__ import annotations

import os
from pathlib import Path

CONF_NAME = "imgsim.conf"
INCLUDE_LINE = f"include_if_exists = '{CONF_NAME}'  # imgsim: memory sized to the machine"


def server_settings(shared_buffers_mb: int, machine_mb: int) -> dict[str, str]:
    """``shared_buffers`` as given (``IMGSIM_DB_MEMORY_MB``), and the planner's estimate of the
    cache an index scan can count on: three quarters of the machine, never below the buffers."""
    return {"shared_buffers": f"{shared_buffers_mb}MB",
            "effective_cache_size": f"{max(shared_buffers_mb, machine_mb * 3 // 4)}MB"}


def conf_text(settings: dict[str, str]) -> str:
    lines = [f"{name} = '{value}'" for name, value in sorted(settings.items())]
    return "# Written by imgsim (IMGSIM_DB_MEMORY_MB); applied at the server's next start.\n" + "\n".join(lines) + "\n"


def write_server_conf(pgdata: Path, settings: dict[str, str]) -> bool:
    """Write ``settings`` for the server in ``pgdata`` (initialised already); True when anything
    changed, so a running server needs a restart to use them."""
    main_conf, conf = pgdata / "postgresql.conf", pgdata / CONF_NAME
    wanted = conf_text(settings)
    changed = not conf.is_file() or conf.read_text() != wanted
    if changed:
        partial = conf.with_suffix(".partial")
        partial.write_text(wanted)
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # the server runs as its own user under root
            owner = main_conf.stat()
            os.chown(partial, owner.st_uid, owner.st_gid)
        os.chmod(partial, 0o644)
        os.replace(partial, conf)  # whole or not at all: a half-written file would stop the server
    if INCLUDE_LINE not in main_conf.read_text():
        with main_conf.open("a") as f:
            f.write("\n" + INCLUDE_LINE + "\n")
        changed = True
    return changed
