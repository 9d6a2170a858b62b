"""match graph: each image's spatially verified neighbours, for graph query expansion

One row per (model, kind, image): the neighbours that passed spatial verification when the
image itself was the query (shortlist from that model's vectors) and their background-weighted
scores. A row with empty arrays means "computed, nothing verified". Neighbour ids that no
longer exist in ``images`` are ignored when read.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE match_graph (
        model text NOT NULL,
        kind text NOT NULL,
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        neighbours bigint[] NOT NULL,
        scores real[] NOT NULL,
        built_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (model, kind, image_id),
        CHECK (cardinality(neighbours) = cardinality(scores)))""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS match_graph")
