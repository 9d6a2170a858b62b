"""DDL of the embedding tables' HNSW indexes, and the vector expressions queries must repeat.

An index has a kind:
- ``vector``: the vectors as stored (4 bytes a dimension). pgvector's HNSW index takes
  ``vector`` columns of up to 2000 dimensions; wider columns are indexed through a ``halfvec``
  expression, and queries use the same cast;
- ``halfvec``: the vectors cast to half precision (2 bytes a dimension) for every model;
- ``binary``: ``binary_quantize`` bits (1 bit a dimension) ordered by Hamming distance; the
  ``RERANK`` x k nearest by bits are re-ranked by the full vectors. The sign of each dimension
  only means something for centred vectors (whitened ones): raw ReLU features set every bit.

The migrations keep their own copies of the DDL they ran (history does not change when this
module does).
"""
from __future__ import annotations

import re

from app.describe.methods import UnknownMethod, get_method

HNSW_MAX_DIM = 2000
HNSW_M = 16  # pgvector's default neighbours per element (2 x M on the bottom layer)
INDEX_KINDS = ("vector", "halfvec", "binary")
RERANK = 10  # binary: candidates by bits per result, re-ranked by the full vectors
_METHOD_CHARS = re.compile(r"[a-z0-9@+\-]+")


def method_literal(method: str) -> str:
    """A stored method name as an SQL string literal.

    The only place a method name enters SQL as text: each (table, method) has a *partial* HNSW
    index (``WHERE method = 'gem'``), and PostgreSQL uses it only for a query whose predicate is
    the same literal, never for a bind parameter. The name must be one the method grammar
    produces (``app.describe.methods``), which allows nothing but ``[a-z0-9@+-]``.
    """
    try:
        canonical = get_method(method).canonical
    except UnknownMethod:
        canonical = None
    if canonical != method or not _METHOD_CHARS.fullmatch(method):
        raise ValueError(f"not a stored method name: {method!r}")
    return f"'{method}'"


def index_name(table: str, method: str) -> str:
    safe = method.replace("-", "_").replace("+", "_").replace("@", "_")
    return f"ix_{table}_{safe}_hnsw"


def _half(dim: int, kind: str) -> bool:
    return kind == "halfvec" or (kind == "vector" and dim > HNSW_MAX_DIM)


def indexed_expr(column: str, dim: int, kind: str) -> str:
    """What an index of ``kind`` holds of a ``vector(dim)`` expression (queries must repeat it)."""
    if kind == "binary":
        return f"(binary_quantize({column})::bit({dim}))"
    return f"({column}::halfvec({dim}))" if _half(dim, kind) else column


def index_opclass(dim: int, kind: str) -> str:
    if kind == "binary":
        return "bit_hamming_ops"
    return "halfvec_cosine_ops" if _half(dim, kind) else "vector_cosine_ops"


def index_order(column: str, operand: str, dim: int, kind: str) -> str:
    """The ORDER BY expression an index of ``kind`` on ``column`` serves, nearest to ``operand``
    (a ``vector(dim)`` expression, taken to the index's form) first."""
    distance = "<~>" if kind == "binary" else "<=>"
    return f"{indexed_expr(column, dim, kind)} {distance} {indexed_expr(operand, dim, kind)}"


def candidates_per_result(dim: int, kind: str) -> int | None:
    """How many rows in index order a query takes per result before ordering them by the full
    vectors' distance: None where the index order is that distance already, 1 where it is close
    (half precision: the same rows, their order made exact), ``RERANK`` for bits."""
    if kind == "binary":
        return RERANK
    return 1 if _half(dim, kind) else None


def create_index_sql(table: str, dim: int, method: str, kind: str, ef_construction: int) -> str:
    """``ef_construction``: the candidate list each inserted element searches for its neighbours
    (pgvector's default 64; IMGSIM_HNSW_EF_CONSTRUCTION, whose knob keeps it within pgvector's
    32-1000); a larger one builds a better connected graph, more slowly."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}")
    return (f"CREATE INDEX IF NOT EXISTS {index_name(table, method)} ON {table} USING hnsw "
            f"({indexed_expr('embedding', dim, kind)} {index_opclass(dim, kind)}) "
            f"WITH (m = {HNSW_M}, ef_construction = {int(ef_construction)}) WHERE method = {method_literal(method)}")


def drop_index_sql(table: str, method: str) -> str:
    return f"DROP INDEX IF EXISTS {index_name(table, method)}"


def hnsw_build_bytes(rows: int, dim: int, kind: str = "vector") -> int:
    """Memory an in-memory HNSW build of ``rows`` vectors takes: per element its value (4 bytes a
    dimension, 2 for half precision, 1/8 for bits), about 2.2 x 2M neighbour slots of 16 bytes,
    and bookkeeping; 25% headroom. (pgvector builds the graph in ``maintenance_work_mem`` and,
    once it outgrows it, goes on inserting element by element on disk, many times slower: 64 MB
    held about 12,000 1280-d vectors.)"""
    per_dim = 0.125 if kind == "binary" else 2 if _half(dim, kind) else 4
    value = per_dim * dim + 8
    return int(rows * (value + 2.2 * 2 * HNSW_M * 16 + 128) * 1.25)
