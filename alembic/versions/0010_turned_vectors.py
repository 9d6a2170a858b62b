"""turned vectors: each image's whole-image vector with the image turned by a quarter

A CNN's vector of a photo turned by a quarter is far from the upright one's, so a photo stored or
shot turned drops out of a search's first stage. A verifying method describes every image turned
too (``app.describe.methods.QUARTER_TURNS``); each turn's nearest images join the shortlist that
spatial verification (rotation invariant) then checks. One row per (model, descriptor, image): the
turned unwhitened unit vectors as float16 bytes, one after the other (a whitening is applied when
read, so a refit needs no rewrite); no index, since they are only read by image.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE turned_vectors (
        model text NOT NULL,
        descriptor text NOT NULL,
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        vectors bytea NOT NULL,
        PRIMARY KEY (model, descriptor, image_id))""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS turned_vectors")
