"""Fixtures: one real embedded PostgreSQL + pgvector per test session, a fresh database per test."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import pytest


# Keep the server's files out of root's home (the server runs as an unprivileged user).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="imgsim-test-", dir="/tmp"))
os.chmod(_SESSION_DIR, 0o755)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["IMGSIM_HOME"] = str(_SESSION_DIR / "home")
os.environ.setdefault("IMGSIM_WEIGHTS_DIR", str(Path(tempfile.gettempdir()) / "imgsim-test-weights"))
os.environ.pop("DATABASE_URL", None)


def _reset_caches() -> None:
    from app.store.db import reset

    reset()


@pytest.fixture(scope="session")
def pg_uri():
    """libpq URI of the session's embedded server (stopped on exit and on SIGTERM)."""
    from app.store.db import embedded_uri, stop_embedded

    pgdata = _SESSION_DIR / "pgdata"
    uri = embedded_uri(pgdata)

    def _stop(*_args):
        stop_embedded(pgdata)
        sys.exit(143)

    previous = signal.signal(signal.SIGTERM, _stop)
    yield uri
    signal.signal(signal.SIGTERM, previous)
    stop_embedded(pgdata)
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def _admin(pg_uri):
    import psycopg

    return psycopg.connect(pg_uri, autocommit=True)


@pytest.fixture
def empty_db(pg_uri, monkeypatch):
    """A fresh, empty database; DATABASE_URL points at it. Yields its libpq URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _admin(pg_uri) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_uri.replace("/postgres?", f"/{name}?")
    monkeypatch.setenv("DATABASE_URL", url)
    _reset_caches()
    yield url
    _reset_caches()
    with _admin(pg_uri) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    monkeypatch.delenv("DATABASE_URL")
    _reset_caches()


@pytest.fixture
def database(empty_db):
    """A fresh database migrated to head."""
    from app.store import migrate

    migrate.upgrade("head")
    return empty_db


@pytest.fixture
def engine(database):
    from app.store.db import get_engine

    return get_engine()



@pytest.fixture(scope="session")
def lite0_embedders():
    """Loaded efficientnet-lite0 backbones shared by every test that ingests with real weights."""
    return {}


@pytest.fixture(scope="session")
def calendar(tmp_path_factory):
    """The generated calendar photo set: (folder, labels csv)."""
    from app.evaluation.synth import make_calendar_set

    folder = tmp_path_factory.mktemp("calendar")
    return folder, make_calendar_set(folder)
