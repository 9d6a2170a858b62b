"""Nearest-neighbour SQL: ``ORDER BY embedding <=> :q LIMIT k`` over the partial HNSW index of a
(table, method), within a ``Scope`` (a collection and its filters), and the HNSW settings each
query runs with."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec
from app.store.ddl import method_literal, query_cast, vector_expr
from app.store.files import file_info
from app.store.scope import Scope

MIN_EF_SEARCH, MAX_EF_SEARCH = 40, 1000
MAX_SCAN_TUPLES = 1_000_000  # iterative scans of filtered searches stop here


@dataclass(frozen=True)
class Neighbour:
    image_id: int
    distance: float  # cosine distance
    paths: tuple[str, ...]  # the image's files, in byte order
    label: str | None  # the first labelled file's label

    @property
    def path(self) -> str:
        return self.paths[0] if self.paths else ""


def knn_sql(spec: ModelSpec, stored: str, scope: Scope | None = None) -> tuple[str, dict]:
    """The search as plain SQL (also what the README shows for psql users) and the scope's
    parameters; ``:q`` and ``:k`` are the query's."""
    expr, cast = vector_expr("e.embedding", spec.dim), query_cast(spec.dim)
    where, params = scope.sql() if scope else ("TRUE", {})
    return (f"SELECT e.image_id, {expr} <=> CAST(:q AS {cast}) AS distance FROM {spec.table} e "
            f"WHERE e.method = {method_literal(stored)} AND {where} "
            f"ORDER BY {expr} <=> CAST(:q AS {cast}) LIMIT :k"), params


@contextmanager
def search_settings(conn: Connection, k: int) -> Iterator[None]:
    """Settings of the nearest-neighbour queries run inside the block: an HNSW candidate list of
    at least k, within [40, 1000], and a scan that goes on past it (up to MAX_SCAN_TUPLES) while
    rows are filtered out (transaction-local); and, for the block only, no sequential scan and no
    sort of an embedding table. The planner cannot estimate the scope's filters: when it guesses
    that they keep few rows it would read the whole table and sort it (pgvector's advice for
    filtered queries); with a sort ruled out, the order comes from the HNSW index."""
    ef = max(MIN_EF_SEARCH, min(int(k), MAX_EF_SEARCH))
    conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true), "
                      "set_config('hnsw.iterative_scan', 'strict_order', true), "
                      "set_config('hnsw.max_scan_tuples', :n, true)"), {"ef": str(ef), "n": str(MAX_SCAN_TUPLES)})
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("RESET enable_seqscan")
        conn.exec_driver_sql("RESET enable_sort")


def with_files(conn: Connection, rows) -> list[Neighbour]:
    """(image id, distance) rows -> neighbours with their files."""
    rows = list(rows)
    info = file_info(conn, [r[0] for r in rows])
    out = []
    for image_id, distance in rows:
        paths, label = info.get(image_id, ([], None))
        out.append(Neighbour(image_id, float(distance), tuple(paths), label))
    return out


def nearest(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray, k: int,
            scope: Scope) -> list[Neighbour]:
    """The k nearest stored rows within ``scope``."""
    sql, params = knn_sql(spec, stored, scope)
    with search_settings(conn, k):
        rows = conn.execute(text(sql), {"q": np.asarray(vector, np.float32), "k": int(k), **params}).all()
    return with_files(conn, rows)


def distances(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray,
              ids: Sequence[int], scope: Scope) -> dict[int, Neighbour]:
    """Whole-image distances to ``vector`` of those given images that are within ``scope`` (no
    index: a known short list)."""
    if not ids:
        return {}
    expr, cast = vector_expr("e.embedding", spec.dim), query_cast(spec.dim)
    where, params = scope.sql()
    rows = conn.execute(text(
        f"SELECT e.image_id, {expr} <=> CAST(:q AS {cast}) AS distance FROM {spec.table} e "
        f"WHERE e.method = :m AND e.region = 0 AND e.image_id = ANY(:ids) AND {where}"),
        {"q": np.asarray(vector, np.float32), "m": stored, "ids": [int(i) for i in ids], **params})
    return {n.image_id: n for n in with_files(conn, rows)}


def close_pairs(conn: Connection, spec: ModelSpec, stored: str, threshold: float,
                neighbours: int, collection: int) -> list[tuple[int, int, float]]:
    """(x, y, distance) with x < y among each image's ``neighbours`` nearest in the collection,
    distance <= threshold."""
    a, b = vector_expr("a.embedding", spec.dim), vector_expr("b.embedding", spec.dim)
    method = method_literal(stored)
    inside, params = Scope(collection).sql("b.image_id")
    sql = text(f"""
        SELECT a.image_id AS x, n.image_id AS y, n.distance
        FROM {spec.table} a JOIN images ai ON ai.id = a.image_id AND ai.collection_id = :scope_c
        CROSS JOIN LATERAL (
            SELECT b.image_id, {b} <=> {a} AS distance FROM {spec.table} b
            WHERE b.method = {method} AND b.region = 0 AND {inside}
            ORDER BY {b} <=> {a} LIMIT :n) n
        WHERE a.method = {method} AND a.region = 0 AND a.image_id < n.image_id AND n.distance <= :t
        ORDER BY n.distance""")
    with search_settings(conn, neighbours):
        rows = conn.execute(sql, {"t": threshold, "n": int(neighbours), **params}).all()
    return [(r.x, r.y, float(r.distance)) for r in rows]
