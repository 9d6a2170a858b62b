"""embedding tables for the offline-pretrained backbones (PyTorch checkpoints ported to Keras)

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from app.schema import create_table_sql, drop_table_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [("emb_mobilenetv2_tv", 1280), ("emb_efficientnet_lite0", 1280),
          ("emb_efficientnet_lite1", 1280), ("emb_efficientnet_lite2", 1280)]


def upgrade() -> None:
    for table, dim in TABLES:
        for statement in create_table_sql(table, dim):
            op.execute(statement)


def downgrade() -> None:
    for table, _dim in reversed(TABLES):
        op.execute(drop_table_sql(table))
