"""Ranking a query: shortlist from the database, then the method's optional steps (query
expansion, spatial verification); ``similar`` is the public entry point."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from app.describe.methods import DEFAULT_METHOD, QE_TOP, SHORTLIST, Method, get_method
from app.describe.registry import ModelSpec, get_model
from app.retrieval.hits import Hit
from app.retrieval.query import NothingStored, Query, QueryError, effective_method, resolve_query
from app.retrieval.rerank import rerank
from app.retrieval.shortlist import expand_query, first_stage, warn_if_unindexed
from app.store.db import get_engine


def rank(conn: Connection, spec: ModelSpec, method: Method, query: Query, k: int,
         among: Sequence[int] | None = None) -> list[Hit]:
    """The ``k`` best stored images for ``query``; ``among`` restricts the candidates."""
    n = max(k, SHORTLIST if method.local else k, QE_TOP + 2 if method.qe else k)
    hits = first_stage(conn, spec, method, query.vectors, n, among)
    if method.qe:
        hits = first_stage(conn, spec, method, expand_query(conn, spec, method, query.vectors, hits), n, among)
    if method.local and query.local is not None:
        hits = rerank(conn, spec, method, query, hits, among)
    return hits[:k]


def similar(query, model: str, k: int = 10, method: str = DEFAULT_METHOD,
            engine: Engine | None = None, embedder=None, max_distance: float | None = None) -> list[Hit]:
    """The ``k`` stored images nearest to ``query`` (an image id or a file path); with
    ``max_distance``, only those within that cosine distance (the query's first-stage distance)."""
    spec, meth = get_model(model), get_method(method)
    if k < 1:
        raise QueryError("k must be at least 1")
    with (engine or get_engine()).begin() as conn:
        meth = effective_method(conn, spec, meth)
        warn_if_unindexed(conn, spec, meth)
        hits = rank(conn, spec, meth, resolve_query(conn, query, spec, meth, embedder), k)
    if not hits:  # only possible when nothing of this model and method is stored
        raise NothingStored(spec.name, meth)
    return hits if max_distance is None else [h for h in hits if h.distance <= max_distance]
