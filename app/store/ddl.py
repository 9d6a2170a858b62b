"""DDL of the embedding tables' HNSW indexes, and the vector expressions queries must repeat.

pgvector's HNSW index takes ``vector`` columns of up to 2000 dimensions; wider columns are
indexed through a ``halfvec`` expression, and queries use the same cast. The migrations keep
their own copies of the DDL they ran (history does not change when this module does).
"""
from __future__ import annotations

import re

from app.describe.methods import UnknownMethod, get_method

HNSW_MAX_DIM = 2000
HNSW_M = 16  # pgvector's default neighbours per element (2 x M on the bottom layer)
_METHOD_CHARS = re.compile(r"[a-z0-9@+\-]+")


def vector_expr(column: str, dim: int) -> str:
    return column if dim <= HNSW_MAX_DIM else f"({column}::halfvec({dim}))"


def query_cast(dim: int) -> str:
    return f"vector({dim})" if dim <= HNSW_MAX_DIM else f"halfvec({dim})"


def opclass(dim: int) -> str:
    return "vector_cosine_ops" if dim <= HNSW_MAX_DIM else "halfvec_cosine_ops"


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


def create_index_sql(table: str, dim: int, method: str) -> str:
    return (f"CREATE INDEX IF NOT EXISTS {index_name(table, method)} ON {table} USING hnsw "
            f"({vector_expr('embedding', dim)} {opclass(dim)}) WHERE method = {method_literal(method)}")


def drop_index_sql(table: str, method: str) -> str:
    return f"DROP INDEX IF EXISTS {index_name(table, method)}"


def hnsw_build_bytes(rows: int, dim: int) -> int:
    """Memory an in-memory HNSW build of ``rows`` vectors takes: per element its value (4 bytes a
    dimension, 2 for the halfvec expression), about 2.2 x 2M neighbour slots of 16 bytes, and
    bookkeeping; 25% headroom. (pgvector builds the graph in ``maintenance_work_mem`` and, once it
    outgrows it, goes on inserting element by element on disk, many times slower: 64 MB held
    about 12,000 1280-d vectors.)"""
    value = (4 if dim <= HNSW_MAX_DIM else 2) * dim + 8
    return int(rows * (value + 2.2 * 2 * HNSW_M * 16 + 128) * 1.25)
