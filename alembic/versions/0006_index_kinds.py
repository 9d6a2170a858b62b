"""index kinds: how each (model, method) HNSW index stores its vectors

``index_kinds`` holds one row per (model, method) whose index is not the default ``vector``
(full precision): ``halfvec`` (an index of the vectors cast to half precision: half the
bytes) or ``binary`` (an index of ``binary_quantize`` bits, searched by Hamming distance and
re-ranked by the full vectors; for centred, i.e. whitened, vectors). The index is rebuilt by
``imgsim index kind``; every later rebuild (a bulk load, ``db check --repair``) keeps the kind.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE index_kinds (
        model text NOT NULL,
        method text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('halfvec', 'binary')),
        PRIMARY KEY (model, method))""")


def downgrade() -> None:
    # Indexes of another kind stay as they are; the code of 0005 neither reads nor rebuilds them.
    op.execute("DROP TABLE IF EXISTS index_kinds")
