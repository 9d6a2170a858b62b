"""HNSW index builds get memory sized to their graph and parallel workers (real PostgreSQL)."""
import logging

import numpy as np
import pytest
from sqlalchemy import text

from app.config import get_settings
from app.store.ddl import hnsw_build_bytes, index_name
from app.store.embeddings import (IndexKindError, drop_index, ensure_index, index_kind, set_index_kind,
                                  size_index_build)
from app.store.knn import knn_sql, nearest, search_settings
from app.store.scope import Scope
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
    settings(IMGSIM_INDEX_WORKERS="1", IMGSIM_HNSW_EF_CONSTRUCTION="100")
    store_random_vectors(LITE0, "gem", 300)
    monkeypatch.setattr(logging.getLogger("imgsim"), "propagate", True)  # the CLI may have turned it off
    with engine.begin() as conn:
        drop_index(conn, LITE0, "gem")
    with caplog.at_level("INFO", logger="imgsim"), engine.begin() as conn:
        assert ensure_index(conn, LITE0, "gem") and not ensure_index(conn, LITE0, "gem")
    [line] = [r.getMessage() for r in caplog.records if "HNSW index of" in r.getMessage()]
    assert line.startswith("built the vector HNSW index of efficientnet-lite0/gem over 300 rows in ")
    assert line.endswith(f"(maintenance_work_mem {64 * 1024} kB, 1 parallel workers, ef_construction 100)")
    with engine.connect() as conn:
        assert "WITH (m='16', ef_construction='100')" in _index_def(conn, "gem")


def _index_def(conn, method_name: str) -> str:
    name = index_name(LITE0.table, method_name)
    return conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar() or ""


@pytest.mark.parametrize("kind, stored, opclass", [("halfvec", "gem", "halfvec_cosine_ops"),
                                                   ("binary", "gem+w", "bit_hamming_ops")])
def test_each_index_kind_is_used_by_searches_and_kept_by_rebuilds(engine, kind, stored, opclass):
    ids, vectors = store_random_vectors(LITE0, stored, 400)  # centred (zero-mean) vectors
    with engine.begin() as conn:
        ensure_index(conn, LITE0, stored)
        assert set_index_kind(conn, LITE0, stored, kind)
        assert index_kind(conn, LITE0, stored) == kind and opclass in _index_def(conn, stored)
    rng = np.random.default_rng(1)
    queries = vectors[:40] + 0.02 * rng.normal(size=(40, LITE0.dim)).astype(np.float32)
    with engine.connect() as conn:
        sql, params = knn_sql(LITE0, stored, Scope(1), kind)
        with search_settings(conn, 10):
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), {"q": queries[0], "k": 10, **params}))
        assert index_name(LITE0.table, stored) in plan  # the order comes from the index of that kind
        for i, q in enumerate(queries):
            hits = nearest(conn, LITE0, stored, q, 10, Scope(1))
            assert hits[0].image_id == ids[i]
            exact = 1 - vectors[[ids.index(h.image_id) for h in hits]] @ q / np.linalg.norm(q)
            assert np.allclose([h.distance for h in hits], exact, atol=2e-3 if kind == "halfvec" else 1e-5)
            assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    with engine.begin() as conn:  # a bulk load drops and rebuilds: the kind stays
        drop_index(conn, LITE0, stored)
        ensure_index(conn, LITE0, stored)
        assert opclass in _index_def(conn, stored)
        assert set_index_kind(conn, LITE0, stored, "vector") and "vector_cosine_ops" in _index_def(conn, stored)
        assert index_kind(conn, LITE0, stored) == "vector"


def test_a_binary_index_needs_whitened_vectors_and_kinds_are_named(engine):
    with engine.begin() as conn:
        with pytest.raises(IndexKindError, match="a binary index needs centred vectors: gem is not whitened"):
            set_index_kind(conn, LITE0, "gem", "binary")
        with pytest.raises(IndexKindError, match="unknown index kind 'int8'"):
            set_index_kind(conn, LITE0, "gem", "int8")
        assert not set_index_kind(conn, LITE0, "gem", "vector")  # already
