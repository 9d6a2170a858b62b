"""The match graph: every stored image's spatially verified neighbours (``imgsim index graph``).

Each image is run as a query once (shortlist from the model's vectors, SIFT/ORB verification,
background weighting) and its verified neighbours are stored with their scores. At query time
the verified candidates' rows expand the query (``app.retrieval.rerank.through_graph``): an
image that verifies strongly against the query's best matches rises even where the query
itself matched it weakly or not at all (another side of the same item, another page under
different light). Rows of images added later are computed by the next run. An edge is stored
in the row of the image that verified it and read from both sides (``app.store.graph.load_graph``),
so older rows need not be rewritten to list the images added after them; ``rebuild`` recomputes
every row (an ingest does after a whitening fit, since the shortlists change).
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from app.collection.groups import find_groups
from app.collection.rows import Row, RowPlacement, local_rows
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.retrieval.query import effective_method
from app.retrieval.shortlist import warn_if_unindexed
from app.store.collections import Collection
from app.store.graph import graph_ids, verifiable_ids, write_graph
from app.store.locks import job_lock
from app.store.retry import with_retry


class GraphError(ValueError):
    pass


def require_verifying(method: Method) -> None:
    """The graph is built from a method's verified matches: refuse one without local features."""
    if method.local is None:
        raise GraphError(f"method {method.name} does not verify: use one with +sift or +orb (e.g. verified)")


def build_graph(engine: Engine, collection: Collection, spec: ModelSpec, method: Method, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None, placement: RowPlacement | None = None) -> dict:
    """Compute the rows of the collection's images without one (every row with ``rebuild``);
    ``progress`` gets (images done, images to do). Neighbours come from the same collection."""
    require_verifying(method)
    kind = method.local.name
    with job_lock(engine, spec.table, f"{collection.id}:graph:{kind}",
                  f"match-graph job of {spec.name}/{kind} in {collection.name}"):
        with engine.connect() as conn:
            ids = verifiable_ids(conn, spec, method.stored, kind, collection.id)
            done = set() if rebuild else graph_ids(conn, spec.name, kind)
            if ids:
                warn_if_unindexed(conn, spec, method)
        ids = [i for i in ids if i not in done]
        edges = finished = 0
        if progress:  # the clock starts now, not at the first batch's rows
            progress(0, len(ids))
        for rows in (placement or local_rows)(engine, collection.id, spec, method, ids):
            with_retry(lambda: _write(engine, spec, kind, method.stored, rows))
            edges += sum(len(scores) for _, scores, _ in rows)
            finished += len(rows)
            if progress:
                progress(finished, len(ids))
        if ids:  # the stored groups follow the new edges
            with_retry(lambda: find_groups(engine, collection, spec.name, kind))
    return {"collection": collection.name, "model": spec.name, "kind": kind, "method": method.canonical,
            "images": len(ids), "edges": edges}


def _write(engine: Engine, spec: ModelSpec, kind: str, shortlist: str, rows: list[Row]) -> None:
    """The rows, computed from the ``shortlist`` vectors."""
    with engine.begin() as conn:
        write_graph(conn, spec.name, kind, rows, shortlist)


def update_graph(engine: Engine, collection: Collection, spec: ModelSpec, method: Method, rebuild: bool = False,
                 progress: Callable[[int, int], None] | None = None,
                 placement: RowPlacement | None = None) -> dict | None:
    """Rows for the new images (all with ``rebuild``) of a verifying method as the collection
    resolves it (``verified`` whitens once fitted); None for other methods."""
    with engine.connect() as conn:
        method = effective_method(conn, collection.id, spec, method)
    return build_graph(engine, collection, spec, method, rebuild, progress, placement) if method.local else None
