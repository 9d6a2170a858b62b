"""Database-side augmentation (DBA): each stored whole-image vector becomes itself plus its
nearest stored neighbours, weighted by similarity^alpha (``app.describe.vectors.augment``).

Images of the same item pull each other's vectors together, so a query that matches one view
finds the others. Computed over the whole collection at once (blocked matrix products, no
index needed) and written as ``<source>+dba`` rows with their own HNSW index; images added
later get their rows from their nearest stored neighbours (``augment_missing``).
"""
from __future__ import annotations

from sqlalchemy import Connection, Engine

from app.describe.methods import QE_ALPHA, QE_TOP, Method, augmented_name
from app.describe.registry import ModelSpec
from app.describe.vectors import augment
from app.retrieval.hits import Hit
from app.retrieval.shortlist import expand_vector
from app.store import embeddings
from app.store.collections import Collection
from app.store.knn import nearest
from app.store.scope import Scope
from app.store.locks import job_lock, lock_table_for_rewrite, lock_tables_for_write
from app.store.retry import with_retry


class AugmentError(ValueError):
    """Augmentation cannot run; ``needs_whitening`` when its source rows are the whitened ones."""

    def __init__(self, message: str, needs_whitening: bool = False):
        super().__init__(message)
        self.needs_whitening = needs_whitening


def augment_collection(engine: Engine, collection: Collection, spec: ModelSpec, method: Method) -> dict:
    """(Re)write every ``method.stored`` row (a ``+dba`` method) of the collection from its source vectors."""
    if not method.dba:
        raise AugmentError(f"method {method.name} has no +dba step (e.g. gem+w+dba)")
    def transaction() -> int:
        with engine.begin() as conn:
            lock_table_for_rewrite(conn, spec.table)
            return augment_rows(conn, collection.id, spec, method.augmented_from)

    with job_lock(engine, spec.table, f"{collection.id}:{method.stored}",
                  f"augmentation of {spec.name}/{method.stored} in {collection.name}"):
        n = with_retry(transaction)
    if n < 2:
        raise AugmentError(f"{spec.name}/{method.augmented_from}: {n} images stored in {collection.name}; "
                           f"augmentation needs at least 2", needs_whitening=method.whiten)
    return {"collection": collection.name, "model": spec.name, "method": method.stored, "n_images": n}


def augment_rows(conn: Connection, collection: int, spec: ModelSpec, source: str) -> int:
    """Rewrite the collection's ``source+dba`` rows from its ``source`` rows; returns the number
    of images (nothing is written below 2)."""
    target = augmented_name(source)
    ids, vectors = embeddings.stored_vectors(conn, spec, source, collection=collection)
    if len(ids) >= 2:
        embeddings.drop_index(conn, spec, target)
        embeddings.delete_embeddings(conn, spec, target, collection)
        embeddings.write_embeddings(conn, spec, target,
                                    [(i, 0, v) for i, v in zip(ids, augment(vectors, QE_TOP, QE_ALPHA))])
        embeddings.ensure_index(conn, spec, target)
    return len(ids)


def augment_missing(engine: Engine, collection: int, spec: ModelSpec, source: str, top: int = QE_TOP,
                    alpha: float = QE_ALPHA) -> int:
    """Augmented rows for images that have ``source`` rows but no ``source+dba`` row, where the
    collection has been augmented: each new vector plus its nearest stored neighbours (HNSW)."""
    target = augmented_name(source)
    with engine.begin() as conn:
        lock_tables_for_write(conn, [spec.table])  # after a rewrite in progress, not beside it
        if not embeddings.has_embeddings(conn, spec, target, collection):
            return 0
        owed = embeddings.ids_without(conn, spec, source, target, collection)
        ids, vectors = embeddings.stored_vectors(conn, spec, source, owed)
        rows = []
        for image_id, vector in zip(ids, vectors):
            near = nearest(conn, spec, source, vector, top + 1, Scope(collection))
            hits = [Hit.of(r) for r in near if r.image_id != image_id][:top]
            rows.append((image_id, 0, expand_vector(conn, spec, source, vector, hits, alpha)))
        embeddings.write_embeddings(conn, spec, target, rows)
    return len(rows)
