"""Database-side augmentation (DBA): each stored whole-image vector becomes itself plus its
nearest stored neighbours, weighted by similarity^alpha (``imgsim index dba``).

Images of the same item pull each other's vectors together, so a query that matches one view
finds the others. Computed over the whole collection at once (blocked matrix products, no
index needed) and written as ``<source>+dba`` rows with their own HNSW index; run it again
after adding images.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, Engine, text

from app import store
from app.embedder import l2_normalize
from app.methods import QE_ALPHA, QE_TOP, Method
from app.registry import ModelSpec
from app.search import expand_vector, nearest

BLOCK = 1024  # query rows per similarity block: bounded memory for large collections


class AugmentError(ValueError):
    pass


def augment(vectors: np.ndarray, top: int = QE_TOP, alpha: float = QE_ALPHA) -> np.ndarray:
    """Each row + its ``top`` nearest other rows weighted by max(0, cosine)^alpha, re-normalised."""
    unit = l2_normalize(vectors)
    out = np.empty_like(unit)
    top = min(top, len(unit) - 1)
    for start in range(0, len(unit), BLOCK):
        block = unit[start:start + BLOCK]
        sims = block @ unit.T
        sims[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # not itself
        out[start:start + len(block)] = block
        if top > 0:
            nearest = np.argpartition(-sims, top - 1, axis=1)[:, :top]
            weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0) ** alpha
            out[start:start + len(block)] += np.einsum("bk,bkd->bd", weights, unit[nearest])
    return l2_normalize(out)


def augment_collection(engine: Engine, spec: ModelSpec, method: Method, among: list[int] | None = None) -> dict:
    """(Re)write every ``method.stored`` row (a ``+dba`` method) from its source vectors
    (``among``: within these images only, an evaluation's collection when the database holds more)."""
    if not method.dba:
        raise AugmentError(f"method {method.name} has no +dba step (e.g. gem+w+dba)")
    with engine.begin() as conn:
        n = augment_rows(conn, spec, method.augmented_from, among)
        if n < 2:
            raise AugmentError(f"{spec.name}/{method.augmented_from}: {n} images stored; augmentation needs at "
                               f"least 2" + (" (run `imgsim index whiten` first)" if method.whiten else ""))
    return {"model": spec.name, "method": method.stored, "n_images": n}


def augment_rows(conn: Connection, spec: ModelSpec, source: str, among: list[int] | None = None) -> int:
    """Rewrite the ``source+dba`` rows from the ``source`` rows; returns the number of images
    (nothing is written below 2)."""
    target = f"{source}+dba"
    ids, vectors = store.stored_vectors(conn, spec, source, among)
    if len(ids) >= 2:
        store.drop_index(conn, spec, target)
        store.delete_embeddings(conn, spec, target)
        store.write_embeddings(conn, spec, target, [(i, 0, v) for i, v in zip(ids, augment(vectors))])
        store.ensure_index(conn, spec, target)
    return len(ids)


def augment_missing(engine: Engine, spec: ModelSpec, source: str, top: int = QE_TOP, alpha: float = QE_ALPHA) -> int:
    """Augmented rows for images that have ``source`` rows but no ``source+dba`` row, where the
    collection has been augmented: each new vector plus its nearest stored neighbours (HNSW)."""
    target = f"{source}+dba"
    with engine.begin() as conn:
        if not store.has_embeddings(conn, spec, target):
            return 0
        missing = [r[0] for r in conn.execute(text(
            f"SELECT image_id FROM {spec.table} WHERE method = :s AND region = 0 EXCEPT "
            f"SELECT image_id FROM {spec.table} WHERE method = :t"), {"s": source, "t": target})]
        ids, vectors = store.stored_vectors(conn, spec, source, missing)
        rows = []
        for image_id, vector in zip(ids, vectors):
            hits = [h for h in nearest(conn, spec, source, vector, top + 1) if h.image_id != image_id][:top]
            rows.append((image_id, 0, expand_vector(conn, spec, source, vector, hits, alpha)))
        store.write_embeddings(conn, spec, target, rows)
    return len(rows)
