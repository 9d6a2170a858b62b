"""HNSW index builds get memory sized to their graph and parallel workers (real PostgreSQL)."""
import logging

import pytest
from sqlalchemy import text

from app.config import get_settings
from app.store.ddl import hnsw_build_bytes
from app.store.embeddings import drop_index, ensure_index, size_index_build
from tests.helpers import LITE0, store_random_vectors


@pytest.fixture
def settings(monkeypatch):
    def use(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
    yield use
    get_settings.cache_clear()


def _memory_kib(conn) -> int:
    return int(conn.execute(text("SELECT setting FROM pg_settings WHERE name = 'maintenance_work_mem'")).scalar())


def test_the_build_memory_follows_the_graph_within_its_floor_and_cap(engine, settings):
    settings(IMGSIM_INDEX_MEMORY_MB="4096", IMGSIM_INDEX_WORKERS="1")
    with engine.connect() as conn:
        default = _memory_kib(conn)
        got = size_index_build(conn, 100_000, 1280)
        assert int(got["maintenance_work_mem"]) == hnsw_build_bytes(100_000, 1280) // 1024
        assert 700 * 1024 < int(got["maintenance_work_mem"]) < 900 * 1024  # about the measured 781 MB index
        assert got["max_parallel_maintenance_workers"] == "1"
        assert int(size_index_build(conn, 10, 1280)["maintenance_work_mem"]) == 64 * 1024  # never below 64 MB
        conn.commit()
        assert _memory_kib(conn) == default  # for that transaction only
    settings(IMGSIM_INDEX_MEMORY_MB="100")
    with engine.begin() as conn:
        assert int(size_index_build(conn, 1_000_000, 1280)["maintenance_work_mem"]) == 100 * 1024
    assert hnsw_build_bytes(1000, 2048) < hnsw_build_bytes(1000, 1280) * 2048 / 1280  # halfvec: 2 bytes a dimension


def test_an_index_is_built_with_the_sized_settings(engine, settings, caplog, monkeypatch):
    settings(IMGSIM_INDEX_WORKERS="1")
    store_random_vectors(LITE0, "gem", 300)
    monkeypatch.setattr(logging.getLogger("imgsim"), "propagate", True)  # the CLI may have turned it off
    with engine.begin() as conn:
        drop_index(conn, LITE0, "gem")
    with caplog.at_level("INFO", logger="imgsim"), engine.begin() as conn:
        assert ensure_index(conn, LITE0, "gem") and not ensure_index(conn, LITE0, "gem")
    [line] = [r.getMessage() for r in caplog.records if "built the HNSW index" in r.getMessage()]
    assert line.startswith("built the HNSW index of efficientnet-lite0/gem over 300 rows in ")
    assert line.endswith(f"(maintenance_work_mem {64 * 1024} kB, 1 parallel workers)")
    with engine.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_emb_efficientnet_lite0_gem_hnsw'"))
        assert found.scalar() == 1
