"""compact local features: a ``format`` per row of ``local_features``

Format 1 (written from this revision on): keypoints as uint16 in 1/32 px, SIFT descriptors with
their eight orientation bins merged into four and the RootSIFT values in 4 bits, two to a byte
(32 bytes a keypoint instead of 128; about 35 KiB an image instead of 117). Rows written before
keep format 0 (float32 keypoints, 128 uint8 values) and are read as format 1 (the reduction is
a function of the stored values), so nothing needs re-extracting.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE local_features ADD COLUMN format smallint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE local_features ALTER COLUMN format DROP DEFAULT")  # writers say which


def downgrade() -> None:
    # The code of 0006 reads only format 0; compact rows are dropped, and the next ingest of
    # their photos extracts them again.
    op.execute("DELETE FROM local_features WHERE format <> 0")
    op.execute("ALTER TABLE local_features DROP COLUMN format")
