"""Ranking a query: shortlist from the database, then the method's optional steps (query
expansion, spatial verification); ``similar`` is the public entry point."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from app.describe.methods import DEFAULT_METHOD, QE_TOP, SHORTLIST, Method, get_method
from app.describe.registry import ModelSpec, get_model
from app.retrieval.hits import Hit
from app.retrieval.query import NothingStored, Query, QueryError, effective_method, resolve_query
from app.retrieval.rerank import rerank
from app.retrieval.shortlist import expand_query, first_stage, warn_if_unindexed
from app.store.collections import DEFAULT_COLLECTION, get_collection
from app.store.db import get_engine
from app.store.embeddings import has_embeddings
from app.store.scope import Scope


def rank(conn: Connection, spec: ModelSpec, method: Method, query: Query, k: int, scope: Scope) -> list[Hit]:
    """The ``k`` best stored images within ``scope`` for ``query``."""
    n = max(k, SHORTLIST if method.local else k, QE_TOP + 2 if method.qe else k)
    hits = first_stage(conn, spec, method, query.vectors, n, scope)
    if method.qe:
        hits = first_stage(conn, spec, method, expand_query(conn, spec, method, query.vectors, hits), n, scope)
    if method.local and query.local is not None:
        hits = rerank(conn, spec, method, query, hits, scope, shown=k)
    return hits[:k]


@dataclass
class Answer:
    """A search's hits and what it ran: the model, the method as the collection resolved it, the collection."""
    hits: list[Hit]
    model: str
    method: str
    resolved: str
    collection: str


def similar(query, model: str, k: int = 10, method: str = DEFAULT_METHOD, engine: Engine | None = None,
            embedder=None, max_distance: float | None = None, collection: str = DEFAULT_COLLECTION,
            label: str | None = None, under: str | None = None, min_confidence: float | None = None) -> Answer:
    """The ``k`` stored images of ``collection`` nearest to ``query`` (an image id or a file
    path); only those with a file labelled ``label`` or below the folder ``under`` when given;
    with ``max_distance``, only those within that cosine distance (the first stage's); with
    ``min_confidence``, only the verified ones at least that confidently the query's item."""
    spec, meth = get_model(model), get_method(method)
    if k < 1:
        raise QueryError("k must be at least 1")
    if min_confidence is not None and not meth.local:
        raise QueryError(f"--min-confidence needs a verifying method: {meth.name} does not verify")
    with (engine or get_engine()).begin() as conn:
        found = get_collection(conn, collection)
        resolved = effective_method(conn, found.id, spec, meth)
        if not has_embeddings(conn, spec, resolved.stored, found.id):
            raise NothingStored(spec.name, resolved, found.name)
        warn_if_unindexed(conn, spec, resolved)
        scope = Scope.of(found.id, label=label, under=under)
        hits = rank(conn, spec, resolved, resolve_query(conn, query, spec, resolved, found.id, embedder), k, scope)
        get_collection(conn, collection)  # dropped while the search ran: an error, not hits without files
    hits = [h for h in hits if h.path]  # an image whose last file was removed meanwhile is gone
    if max_distance is not None:
        hits = [h for h in hits if h.distance <= max_distance]
    if min_confidence is not None:
        hits = [h for h in hits if h.confidence is not None and h.confidence >= min_confidence]
    return Answer(hits, spec.name, meth.name, resolved.canonical, found.name)
