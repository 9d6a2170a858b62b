"""DDL of the embedding tables' HNSW indexes, and the vector expressions queries must repeat.

pgvector's HNSW index takes ``vector`` columns of up to 2000 dimensions; wider columns are
indexed through a ``halfvec`` expression, and queries use the same cast. The migrations keep
their own copies of the DDL they ran (history does not change when this module does).
"""
from __future__ import annotations

import re

from app.describe.methods import UnknownMethod, get_method

HNSW_MAX_DIM = 2000
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
