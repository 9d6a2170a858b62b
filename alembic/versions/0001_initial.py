"""images, failures, and an embedding table for each keras.applications model

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen at this revision: (table, dimension). A model added later gets its own migration.
TABLES = [
    ("emb_resnet50", 2048), ("emb_resnet101", 2048), ("emb_resnet152", 2048),
    ("emb_efficientnetb0", 1280), ("emb_efficientnetb1", 1280), ("emb_efficientnetb2", 1408),
    ("emb_vgg16", 512), ("emb_vgg19", 512), ("emb_inceptionv3", 2048), ("emb_inceptionresnetv2", 1536),
    ("emb_mobilenetv2", 1280), ("emb_mobilenetv3small", 576), ("emb_mobilenetv3large", 960),
]


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
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("""CREATE TABLE images (
        id bigserial PRIMARY KEY,
        sha256 char(64) NOT NULL UNIQUE,
        path text NOT NULL,
        width integer NOT NULL CHECK (width > 0),
        height integer NOT NULL CHECK (height > 0),
        label text,
        ingested_at timestamptz NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_images_path ON images (path)")
    op.execute("""CREATE TABLE failures (
        id bigserial PRIMARY KEY,
        path text NOT NULL,
        reason text NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT now())""")
    op.execute("CREATE INDEX ix_failures_path ON failures (path)")
    for table, dim in TABLES:
        for statement in _create_table(table, dim):
            op.execute(statement)


def downgrade() -> None:
    for table, _dim in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP TABLE IF EXISTS failures")
    op.execute("DROP TABLE IF EXISTS images")
    op.execute("DROP EXTENSION IF EXISTS vector")
