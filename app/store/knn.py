"""Nearest-neighbour SQL: ``ORDER BY embedding <=> :q LIMIT k`` over the partial HNSW index of a
(table, method), and the HNSW settings each query runs with."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec
from app.store.ddl import method_literal, query_cast, vector_expr

MIN_EF_SEARCH, MAX_EF_SEARCH = 40, 1000
MAX_SCAN_TUPLES = 1_000_000  # iterative scans of restricted searches stop here


@dataclass(frozen=True)
class Neighbour:
    image_id: int
    path: str
    label: str | None
    distance: float  # cosine distance


def knn_sql(spec: ModelSpec, stored: str, restricted: bool = False) -> str:
    """The search as plain SQL (also what the README shows for psql users).

    ``restricted`` adds a filter to the image ids in ``:among`` (evaluation protocols).
    """
    expr, cast = vector_expr("e.embedding", spec.dim), query_cast(spec.dim)
    among = " AND e.image_id = ANY(:among)" if restricted else ""
    return (f"SELECT i.id, i.path, i.label, {expr} <=> CAST(:q AS {cast}) AS distance "
            f"FROM {spec.table} e JOIN images i ON i.id = e.image_id "
            f"WHERE e.method = {method_literal(stored)}{among} "
            f"ORDER BY {expr} <=> CAST(:q AS {cast}) LIMIT :k")


def set_ef_search(conn: Connection, k: int) -> None:
    """HNSW candidate list for this transaction: at least k, within [40, 1000]."""
    ef = max(MIN_EF_SEARCH, min(int(k), MAX_EF_SEARCH))
    conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef)})


def _restrict(conn: Connection) -> None:
    # Filtered searches keep scanning the index until k rows pass the filter (pgvector 0.8).
    conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                      "set_config('hnsw.max_scan_tuples', :n, true)"), {"n": str(MAX_SCAN_TUPLES)})


def nearest(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray, k: int,
            among: Sequence[int] | None = None) -> list[Neighbour]:
    """The k nearest stored rows; ``among`` restricts the candidates (an iterative index scan)."""
    set_ef_search(conn, k)
    params = {"q": np.asarray(vector, np.float32), "k": int(k)}
    if among is not None:
        _restrict(conn)
        params["among"] = [int(i) for i in among]
    rows = conn.execute(text(knn_sql(spec, stored, among is not None)), params)
    return [Neighbour(r.id, r.path, r.label, float(r.distance)) for r in rows]


def distances(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray,
              ids: Sequence[int]) -> dict[int, Neighbour]:
    """Whole-image distances of the given images to ``vector`` (no index: a known short list)."""
    if not ids:
        return {}
    expr, cast = vector_expr("e.embedding", spec.dim), query_cast(spec.dim)
    rows = conn.execute(text(
        f"SELECT i.id, i.path, i.label, {expr} <=> CAST(:q AS {cast}) AS distance "
        f"FROM {spec.table} e JOIN images i ON i.id = e.image_id "
        f"WHERE e.method = :m AND e.region = 0 AND e.image_id = ANY(:ids)"),
        {"q": np.asarray(vector, np.float32), "m": stored, "ids": [int(i) for i in ids]})
    return {r.id: Neighbour(r.id, r.path, r.label, float(r.distance)) for r in rows}


def close_pairs(conn: Connection, spec: ModelSpec, stored: str, threshold: float,
                neighbours: int) -> list[tuple[int, int, float]]:
    """(x, y, distance) with x < y among each image's ``neighbours`` nearest, distance <= threshold."""
    a, b = vector_expr("a.embedding", spec.dim), vector_expr("b.embedding", spec.dim)
    method = method_literal(stored)
    sql = text(f"""
        SELECT a.image_id AS x, n.image_id AS y, n.distance
        FROM {spec.table} a
        CROSS JOIN LATERAL (
            SELECT b.image_id, {b} <=> {a} AS distance FROM {spec.table} b
            WHERE b.method = {method} AND b.region = 0
            ORDER BY {b} <=> {a} LIMIT :n) n
        WHERE a.method = {method} AND a.region = 0 AND a.image_id < n.image_id AND n.distance <= :t
        ORDER BY n.distance""")
    set_ef_search(conn, neighbours)
    return [(r.x, r.y, float(r.distance)) for r in conn.execute(sql, {"t": threshold, "n": int(neighbours)})]
