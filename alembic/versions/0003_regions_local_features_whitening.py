"""regional rows, local features for spatial verification, collection whitening

- every embedding table gets ``region`` (0 = whole image) in its primary key, and HNSW
  indexes for the descriptors of this revision;
- ``local_features``: keypoints and descriptors per image and kind (sift, orb);
- ``whitening``: the PCA-whitening fitted on a collection, per model and descriptor.

Downgrade keeps every whole-image row (region 0) and drops regional rows, local features
and whitening.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = [
    ("emb_resnet50", 2048), ("emb_resnet101", 2048), ("emb_resnet152", 2048),
    ("emb_efficientnetb0", 1280), ("emb_efficientnetb1", 1280), ("emb_efficientnetb2", 1408),
    ("emb_vgg16", 512), ("emb_vgg19", 512), ("emb_inceptionv3", 2048), ("emb_inceptionresnetv2", 1536),
    ("emb_mobilenetv2", 1280), ("emb_mobilenetv3small", 576), ("emb_mobilenetv3large", 960),
    ("emb_mobilenetv2_tv", 1280), ("emb_efficientnet_lite0", 1280),
    ("emb_efficientnet_lite1", 1280), ("emb_efficientnet_lite2", 1280),
]
METHODS = ["gem", "gem-ms", "rmac", "gem+w", "gem-ms+w", "rmac+w"]


def _index_name(table: str, method: str) -> str:
    return f"ix_{table}_{method.replace('-', '_').replace('+', '_')}_hnsw"


def _create_index(table: str, dim: int, method: str) -> str:
    """A partial HNSW cosine index per (table, method), as created at this revision."""
    expr, ops = ("embedding", "vector_cosine_ops") if dim <= 2000 else (f"(embedding::halfvec({dim}))",
                                                                      "halfvec_cosine_ops")
    return (f"CREATE INDEX IF NOT EXISTS {_index_name(table, method)} ON {table} USING hnsw ({expr} {ops}) "
            f"WHERE method = '{method}'")


def upgrade() -> None:
    for table, dim in TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN region smallint NOT NULL DEFAULT 0")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (image_id, method, region)")
        for method in METHODS:
            op.execute(_create_index(table, dim, method))
    op.execute("""CREATE TABLE local_features (
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        kind text NOT NULL,
        n integer NOT NULL,
        points bytea NOT NULL,
        descriptors bytea NOT NULL,
        PRIMARY KEY (image_id, kind))""")
    op.execute("""CREATE TABLE whitening (
        model text NOT NULL,
        method text NOT NULL,
        version integer NOT NULL,
        n_images integer NOT NULL,
        dims integer NOT NULL,
        mean bytea NOT NULL,
        projection bytea NOT NULL,
        fitted_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (model, method))""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS whitening")
    op.execute("DROP TABLE IF EXISTS local_features")
    for table, _dim in reversed(TABLES):
        for method in METHODS:
            op.execute(f"DROP INDEX IF EXISTS {_index_name(table, method)}")
        op.execute(f"DELETE FROM {table} WHERE region <> 0")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} DROP COLUMN region")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (image_id, method)")
