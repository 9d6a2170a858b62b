"""embedding tables for the offline-pretrained backbones (PyTorch checkpoints ported to Keras)

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [("emb_mobilenetv2_tv", 1280), ("emb_efficientnet_lite0", 1280),
          ("emb_efficientnet_lite1", 1280), ("emb_efficientnet_lite2", 1280)]


def _create_table(table: str, dim: int) -> list[str]:
    """The embedding table and its HNSW index for ``global`` rows, as created at this revision
    (vector columns over 2000 dimensions are indexed through a halfvec expression)."""
    expr, ops = ("embedding", "vector_cosine_ops") if dim <= 2000 else (f"(embedding::halfvec({dim}))",
                                                                      "halfvec_cosine_ops")
    return [
        f"""CREATE TABLE {table} (
            image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            method text NOT NULL DEFAULT 'global',
            embedding vector({dim}) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, method))""",
        f"CREATE INDEX IF NOT EXISTS ix_{table}_global_hnsw ON {table} USING hnsw ({expr} {ops}) "
        f"WHERE method = 'global'",
    ]


def upgrade() -> None:
    for table, dim in TABLES:
        for statement in _create_table(table, dim):
            op.execute(statement)


def downgrade() -> None:
    for table, _dim in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS {table}")
