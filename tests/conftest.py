"""Fixtures: one real embedded PostgreSQL + pgvector per test session, a fresh database per test."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest


# Keep the server's files out of root's home (the server runs as an unprivileged user).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="imgsim-test-", dir="/tmp"))
os.chmod(_SESSION_DIR, 0o755)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["IMGSIM_HOME"] = str(_SESSION_DIR / "home")
os.environ.setdefault("IMGSIM_WEIGHTS_DIR", str(Path(tempfile.gettempdir()) / "imgsim-test-weights"))
os.environ.pop("DATABASE_URL", None)


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


@pytest.fixture
def empty_db(pg_uri, monkeypatch):
    """A fresh, empty database; DATABASE_URL points at it. Yields its libpq URL."""
    from tests.helpers import fresh_database

    with fresh_database(pg_uri, monkeypatch) as url:
        yield url


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


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster (2 CPUs) for the session, stopped at its end."""
    import ray

    from app.ingestion.distributed import start

    start(cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def precision(monkeypatch):
    """Set IMGSIM_INFERENCE_PRECISION for one test."""
    from app.config import get_settings

    def use(value: str) -> None:
        monkeypatch.setenv("IMGSIM_INFERENCE_PRECISION", value)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()
