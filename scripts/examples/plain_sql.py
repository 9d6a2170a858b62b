"""The same nearest-neighbour search in plain SQL: psycopg + pgvector-python, no imgsim code
beyond finding the database URL. The numpy query vector is a bind parameter.

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
                       "WHERE e.image_id = %s AND e.method = 'global' AND e.region = 0", (args.image_id,)).fetchone()
    if row is None:
        raise SystemExit(f"image {args.image_id} has no efficientnet-lite0/global vector "
                         f"(imgsim ingest FOLDER --method global)")
    query, collection = row  # a numpy array, and the collection to search in
    # The literal 'global' (not a parameter) lets PostgreSQL use the partial HNSW index of the
    # method; the collection test is a scalar subquery, so it filters the index scan.
    rows = conn.execute("SELECT e.image_id, e.embedding <=> %s AS distance, "
                        "(SELECT array_agg(f.path ORDER BY f.path) FROM files f WHERE f.image_id = e.image_id) "
                        "FROM emb_efficientnet_lite0 e WHERE e.method = 'global' "
                        "AND (SELECT i.collection_id FROM images i WHERE i.id = e.image_id) = %s "
                        "ORDER BY e.embedding <=> %s LIMIT 5", (query, collection, query)).fetchall()
for image_id, distance, paths in rows:
    print(f"{image_id:>6}  {distance:.4f}  {', '.join(paths)}")
