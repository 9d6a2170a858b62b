"""The first stage: the nearest stored vectors from the HNSW index, region voting for ``rmac``,
and alpha query expansion (``+qe``)."""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from sqlalchemy import Connection

from app.describe.methods import QE_ALPHA, QE_TOP, Method
from app.describe.registry import ModelSpec
from app.describe.vectors import expand
from app.retrieval.hits import Hit
from app.retrieval.query import Query, stored_turned
from app.store.embeddings import has_embeddings, has_index, stored_vectors
from app.store.knn import nearest
from app.store.scope import Scope

log = logging.getLogger("imgsim")
# each quarter turn of a verified query adds its 5 nearest to the shortlist: on Holidays (photos
# stored turned) the two turns brought back 64 of the 133 relevant images the upright top 100
# lost, for 3.0 more verifications a query
TURNED_TOP = 5


def warn_if_unindexed(conn: Connection, spec: ModelSpec, method: Method) -> bool:
    """Say in one line (log) when the first stage's vectors are stored without their HNSW index:
    the search is still right, but scans every row. True when that is so."""
    if has_index(conn, spec, method.stored) or not has_embeddings(conn, spec, method.stored):
        return False
    log.warning("%s/%s has no HNSW index, so searches scan every row; run `imgsim db check --repair`",
                spec.name, method.stored)
    return True


def first_stage(conn: Connection, spec: ModelSpec, method: Method, vectors: np.ndarray, n: int,
                scope: Scope) -> list[Hit]:
    """The ``n`` nearest images within ``scope`` to the query's vectors (row 0 = whole image;
    more rows = regions)."""
    if not method.descriptor.regions:
        return [Hit.of(r) for r in nearest(conn, spec, method.stored, vectors[0], n, scope)]
    # Regions: each query region votes for images with its best-matching region.
    per_region = max(4 * n, 200)
    best: dict[int, float] = {}
    info: dict[int, Hit] = {}
    for vector in vectors:
        seen: dict[int, float] = {}
        for row in nearest(conn, spec, method.stored, vector, per_region, scope):
            seen[row.image_id] = max(seen.get(row.image_id, -1.0), 1.0 - row.distance)
            info.setdefault(row.image_id, Hit.of(row))
        for image_id, sim in seen.items():
            best[image_id] = best.get(image_id, 0.0) + sim
    ranked = sorted(best, key=lambda i: -best[i])[:n]
    return [replace(info[i], distance=1.0 - best[i] / len(vectors)) for i in ranked]


def turned_hits(conn: Connection, spec: ModelSpec, method: Method, query: Query, hits: list[Hit],
                scope: Scope) -> list[Hit]:
    """For each quarter turn of the query, its ``TURNED_TOP`` nearest images not among ``hits``
    (nor the query), at the turned vector's distance: a photo stored or shot turned is far from
    the upright query's vector but near one of its turns. Spatial verification, which does not
    depend on the turn, then decides; they only join the candidates. A stored image's turned
    vectors are read here, not with the query: a search answered from its match-graph row needs none."""
    turned = query.turned
    if turned is None and query.image_id is not None:
        turned = stored_turned(conn, query.image_id, spec, method)
    if turned is None:
        return []
    seen = {h.image_id for h in hits} | {query.image_id}
    found: list[Hit] = []
    for vector in turned:
        for row in nearest(conn, spec, method.stored, vector, TURNED_TOP, scope):
            if row.image_id not in seen:
                seen.add(row.image_id)
                found.append(Hit.of(row))
    return found


def expand_vector(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray, hits: list[Hit],
                  alpha: float = QE_ALPHA) -> np.ndarray:
    """``vector`` plus each hit's stored vector weighted by max(0, similarity)^alpha, L2-normalised
    (alpha-QE for a query, DBA for a stored image)."""
    ids, vectors = stored_vectors(conn, spec, stored, [h.image_id for h in hits])
    by_id = dict(zip(ids, vectors))
    return expand(vector, [by_id[h.image_id] for h in hits], [h.distance for h in hits], alpha)


def expand_query(conn: Connection, spec: ModelSpec, method: Method, query: np.ndarray,
                 hits: list[Hit]) -> np.ndarray:
    """The query's whole-image row expanded with its top ``QE_TOP`` results (itself excluded)."""
    top = [h for h in hits if h.distance > 1e-6][:QE_TOP]
    if not top:
        return query
    out = query.copy()
    out[0] = expand_vector(conn, spec, method.stored, query[0], top)
    return out
