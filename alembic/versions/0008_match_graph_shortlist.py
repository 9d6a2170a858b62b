"""match graph: the stored vectors each row's shortlist came from

``match_graph.shortlist`` names the stored vectors (``embedding.method``, e.g. ``gem+w``) whose
nearest neighbours the row's image verified when it was the query. With ``built_at`` it tells
whether the row is what verifying that image now would give (the same first stage, built after
the vectors' whitening was fitted), so a search for a stored image can answer from its row
instead of verifying its shortlist again. Rows written before have none and are used only for
expansion, as before, until the graph is rebuilt.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE match_graph ADD COLUMN shortlist text")


def downgrade() -> None:
    op.execute("ALTER TABLE match_graph DROP COLUMN shortlist")
