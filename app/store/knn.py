"""Nearest-neighbour SQL: ``ORDER BY embedding <=> :q LIMIT k`` over the partial HNSW index of a
(table, method), in the form the index's kind serves (``app.store.ddl``), within a ``Scope`` (a
collection and its filters), and the HNSW settings each query runs with. Distances are always
the full vectors' cosine distances."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec
from app.store.ddl import candidates_per_result, index_order, method_literal
from app.store.embeddings import index_kind
from app.store.files import file_info
from app.store.scope import Scope

# pgvector's default candidate list (40) kept 0.89 of the true top 10 at 100,000 real-like
# vectors and 0.79 at 1,000,000; 100 kept 0.98 and 0.86. At 1,000,000 in an index built with
# ef_construction 128, 400 kept 0.96 in p50 7.6 ms, 200 kept 0.95 in 6.3 ms (docs/scale.md).
MIN_EF_SEARCH, MAX_EF_SEARCH = 400, 1000
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


def knn_sql(spec: ModelSpec, stored: str, scope: Scope | None = None, kind: str = "vector") -> tuple[str, dict]:
    """The search as plain SQL (also what the README shows for psql users) and the scope's
    parameters; ``:q`` and ``:k`` are the query's; ``kind``: the index's."""
    where, params = scope.sql() if scope else ("TRUE", {})
    return _nearest_sql("e", spec, stored, kind, f"CAST(:q AS vector({spec.dim}))", where, ":k"), params


def _nearest_sql(alias: str, spec: ModelSpec, stored: str, kind: str, operand: str, where: str, limit: str) -> str:
    """The ``limit`` rows of ``alias`` (the model's table) nearest to ``operand`` (a vector
    expression), as (image_id, distance), taken in the order an index of ``kind`` serves and
    ordered by the full vectors' distance (``candidates_per_result``)."""
    distance = f"{alias}.embedding <=> {operand}"
    order = index_order(f"{alias}.embedding", operand, spec.dim, kind)
    rows = (f"SELECT {alias}.image_id, {distance} AS distance FROM {spec.table} {alias} "
            f"WHERE {alias}.method = {method_literal(stored)} AND {where} ORDER BY {order}")
    factor = candidates_per_result(spec.dim, kind)
    if factor is None:
        return f"{rows} LIMIT {limit}"
    return (f"SELECT candidates.image_id, candidates.distance FROM ({rows} LIMIT {factor} * {limit}) candidates "
            f"ORDER BY candidates.distance LIMIT {limit}")


@contextmanager
def search_settings(conn: Connection, k: int, ef_search: int | None = None) -> Iterator[None]:
    """Settings of the nearest-neighbour queries run inside the block: an HNSW candidate list of
    at least k, within [400, 1000] (``ef_search`` when given), and a scan that goes on past it
    (up to MAX_SCAN_TUPLES) while rows are filtered out (transaction-local); and, for the block
    only, no sequential scan and no sort of an embedding table. The planner cannot estimate the scope's filters: when it guesses
    that they keep few rows it would read the whole table and sort it (pgvector's advice for
    filtered queries); with a sort ruled out, the order comes from the HNSW index."""
    ef = int(ef_search) if ef_search else max(MIN_EF_SEARCH, min(int(k), MAX_EF_SEARCH))
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
            scope: Scope, ef_search: int | None = None) -> list[Neighbour]:
    """The k nearest stored rows within ``scope`` (``ef_search``: the HNSW candidate list, else
    as many as the rows the index is asked for, at least MIN_EF_SEARCH)."""
    kind = index_kind(conn, spec, stored)
    sql, params = knn_sql(spec, stored, scope, kind)
    with search_settings(conn, k * (candidates_per_result(spec.dim, kind) or 1), ef_search):
        rows = conn.execute(text(sql), {"q": np.asarray(vector, np.float32), "k": int(k), **params}).all()
    return with_files(conn, rows)


def distances(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray,
              ids: Sequence[int], scope: Scope) -> dict[int, Neighbour]:
    """Whole-image distances to ``vector`` of those given images that are within ``scope`` (no
    index: a known short list)."""
    if not ids:
        return {}
    where, params = scope.sql()
    rows = conn.execute(text(
        f"SELECT e.image_id, e.embedding <=> CAST(:q AS vector({spec.dim})) AS distance FROM {spec.table} e "
        f"WHERE e.method = :m AND e.region = 0 AND e.image_id = ANY(:ids) AND {where}"),
        {"q": np.asarray(vector, np.float32), "m": stored, "ids": [int(i) for i in ids], **params})
    return {n.image_id: n for n in with_files(conn, rows)}


def close_pairs(conn: Connection, spec: ModelSpec, stored: str, threshold: float,
                neighbours: int, collection: int) -> list[tuple[int, int, float]]:
    """(x, y, distance) with x < y among each image's ``neighbours`` nearest in the collection,
    distance <= threshold."""
    method = method_literal(stored)
    inside, params = Scope(collection).sql("b.image_id")
    nearest_b = _nearest_sql("b", spec, stored, index_kind(conn, spec, stored), "a.embedding",
                             f"b.region = 0 AND {inside}", ":n")
    sql = text(f"""
        SELECT a.image_id AS x, n.image_id AS y, n.distance
        FROM {spec.table} a JOIN images ai ON ai.id = a.image_id AND ai.collection_id = :scope_c
        CROSS JOIN LATERAL ({nearest_b}) n
        WHERE a.method = {method} AND a.region = 0 AND a.image_id < n.image_id AND n.distance <= :t
        ORDER BY n.distance""")
    with search_settings(conn, neighbours):
        rows = conn.execute(sql, {"t": threshold, "n": int(neighbours), **params}).all()
    return [(r.x, r.y, float(r.distance)) for r in rows]
