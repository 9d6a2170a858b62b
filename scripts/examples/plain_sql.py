"""The same search in plain SQL: psycopg + pgvector-python, no imgsim code beyond finding the
database URL. The numpy query vector is a bind parameter. Then every photo of the same item as
the image, from the ``same_item`` view and the ``item_groups`` table that the default
(verified) ingest keeps.

    .venv/bin/python scripts/examples/plain_sql.py IMAGE_ID
"""
import argparse

import psycopg
from pgvector.psycopg import register_vector

from app.store.db import libpq_url  # DATABASE_URL, or the embedded server's URL

parser = argparse.ArgumentParser()
parser.add_argument("image_id", type=int)
args = parser.parse_args()

with psycopg.connect(libpq_url()) as conn:
    register_vector(conn)  # numpy arrays in and out as vector
    row = conn.execute("SELECT e.embedding, i.collection_id FROM emb_efficientnet_lite0 e "
                       "JOIN images i ON i.id = e.image_id "
                       "WHERE e.image_id = %s AND e.method = 'gem' AND e.region = 0", (args.image_id,)).fetchone()
    if row is None:
        raise SystemExit(f"image {args.image_id} has no efficientnet-lite0/gem vector (imgsim ingest FOLDER)")
    query, collection = row  # a numpy array, and the collection to search in
    # The literal 'gem' (not a parameter) lets PostgreSQL use the partial HNSW index of the
    # method; the collection test is a scalar subquery, so it filters the index scan.
    nearest = conn.execute("SELECT e.image_id, e.embedding <=> %s AS distance, "
                           "(SELECT array_agg(f.path ORDER BY f.path) FROM files f WHERE f.image_id = e.image_id) "
                           "FROM emb_efficientnet_lite0 e WHERE e.method = 'gem' "
                           "AND (SELECT i.collection_id FROM images i WHERE i.id = e.image_id) = %s "
                           "ORDER BY e.embedding <=> %s LIMIT 5", (query, collection, query)).fetchall()
    # every photo of the same item: the pairs at confidence 0.5 or more (a person's "same"
    # counts 1, "not the same" 0), and the photos of the image's group
    same = conn.execute("SELECT other_id, confidence FROM same_item WHERE image_id = %s "
                        "AND model = 'efficientnet-lite0' AND confidence >= 0.5 "
                        "ORDER BY confidence DESC, other_id", (args.image_id,)).fetchall()
    group = conn.execute("SELECT g.image_id FROM item_groups g JOIN item_groups mine "
                         "ON mine.collection_id = g.collection_id AND mine.model = g.model "
                         "AND mine.group_id = g.group_id "
                         "WHERE mine.image_id = %s AND g.model = 'efficientnet-lite0' ORDER BY g.image_id",
                         (args.image_id,)).fetchall()
for image_id, distance, paths in nearest:
    print(f"{image_id:>6}  {distance:.4f}  {', '.join(paths)}")
print("same item:", " ".join(f"{other}:{confidence:.2f}" for other, confidence in same) or "none")
print("group:", " ".join(str(image_id) for (image_id,) in group) or "none")
