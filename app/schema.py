"""DDL for the per-model embedding tables, shared by the migrations and the index maintenance.

pgvector's HNSW index takes ``vector`` columns of up to 2000 dimensions; wider
columns are indexed through a ``halfvec`` expression, and queries use the same cast.
"""
from __future__ import annotations

HNSW_MAX_DIM = 2000


def vector_expr(column: str, dim: int) -> str:
    return column if dim <= HNSW_MAX_DIM else f"({column}::halfvec({dim}))"


def query_cast(dim: int) -> str:
    return f"vector({dim})" if dim <= HNSW_MAX_DIM else f"halfvec({dim})"


def opclass(dim: int) -> str:
    return "vector_cosine_ops" if dim <= HNSW_MAX_DIM else "halfvec_cosine_ops"


def index_name(table: str, method: str) -> str:
    safe = method.replace("-", "_").replace("+", "_").replace("@", "_")
    return f"ix_{table}_{safe}_hnsw"


def create_index_sql(table: str, dim: int, method: str = "global") -> str:
    return (f"CREATE INDEX IF NOT EXISTS {index_name(table, method)} ON {table} USING hnsw "
            f"({vector_expr('embedding', dim)} {opclass(dim)}) WHERE method = '{method}'")


def create_table_sql(table: str, dim: int) -> list[str]:
    return [
        f"""CREATE TABLE {table} (
            image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            method text NOT NULL DEFAULT 'global',
            embedding vector({dim}) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, method))""",
        create_index_sql(table, dim),
    ]


def drop_table_sql(table: str) -> str:
    return f"DROP TABLE IF EXISTS {table}"
