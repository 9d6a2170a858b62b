"""same item: a confidence per match-graph edge, a person's decisions, the groups, and views

- ``match_graph.confidences``: for each neighbour of a row, the probability that the two photos
  show the same item (``app.retrieval.confidence``), beside its score. NULL: a row built before
  this revision (``imgsim db check --repair`` computes it again).
- ``same_item_decisions``: what a person said of a pair ("same" or "not the same"), kept by
  image id (a pair once, the smaller id first); it outlives regrouping and later ingests, and
  goes with either image.
- ``item_groups``: the groups of photos of one item, as the last grouping of a collection's
  match graph found them (``app.collection.groups``), with each member's confidence.
- view ``same_item``: every edge of every graph read from both sides at its better confidence,
  a decision overriding it (1 for "same", 0 for "not the same"; a pair decided "same" that no
  edge joins is listed too).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SAME_ITEM = """CREATE VIEW same_item AS
WITH edges AS (
    SELECT g.model, g.image_id, u.other_id, u.confidence
    FROM match_graph g CROSS JOIN LATERAL unnest(g.neighbours, g.confidences) AS u(other_id, confidence)
    WHERE g.confidences IS NOT NULL),
pairs AS (
    SELECT model, least(image_id, other_id) AS a, greatest(image_id, other_id) AS b, max(confidence) AS confidence
    FROM edges GROUP BY 1, 2, 3),
decided AS (
    SELECT coalesce(p.model, m.model) AS model, coalesce(p.a, d.image_id) AS a, coalesce(p.b, d.other_id) AS b,
           CASE WHEN d.same THEN 1.0 WHEN NOT d.same THEN 0.0 ELSE p.confidence END AS confidence, d.same AS decided
    FROM pairs p
    FULL JOIN (same_item_decisions d CROSS JOIN (SELECT DISTINCT model FROM match_graph) m)
        ON d.image_id = p.a AND d.other_id = p.b AND m.model = p.model
    WHERE p.a IS NOT NULL OR d.same)
SELECT i.collection_id, x.model, x.image_id, x.other_id, x.confidence::real AS confidence, x.decided
FROM (SELECT model, a AS image_id, b AS other_id, confidence, decided FROM decided
      UNION ALL SELECT model, b, a, confidence, decided FROM decided) x
JOIN images i ON i.id = x.image_id"""


def upgrade() -> None:
    op.execute("ALTER TABLE match_graph ADD COLUMN confidences real[] "
               "CHECK (cardinality(confidences) = cardinality(neighbours))")
    op.execute("""CREATE TABLE same_item_decisions (
        collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        other_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        same boolean NOT NULL,
        decided_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (image_id, other_id),
        CHECK (image_id < other_id))""")
    op.execute("CREATE INDEX same_item_decisions_other ON same_item_decisions (other_id)")
    op.execute("""CREATE TABLE item_groups (
        collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        model text NOT NULL,
        group_id integer NOT NULL,
        image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        confidence real NOT NULL,
        grouped_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (collection_id, model, image_id))""")
    op.execute(SAME_ITEM)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS same_item")
    op.execute("DROP TABLE IF EXISTS item_groups")
    op.execute("DROP TABLE IF EXISTS same_item_decisions")
    op.execute("ALTER TABLE match_graph DROP COLUMN IF EXISTS confidences")
