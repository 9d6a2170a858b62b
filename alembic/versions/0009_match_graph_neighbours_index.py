"""match graph: an index on the neighbour lists, so an edge can be read from both sides

A verified pair is stored in the row of the image that asked (its shortlist held the other).
Searches read each edge from both sides: an image's neighbours are its own row and the rows
that list it (``neighbours && ARRAY[...]``), which this GIN index finds without reading every row.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX match_graph_neighbours ON match_graph USING gin (neighbours)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS match_graph_neighbours")
