"""The match graph: every stored image's spatially verified neighbours (``imgsim index graph``).

Each image is run as a query once (shortlist from the model's vectors, SIFT/ORB verification,
background weighting) and its verified neighbours are stored with their scores. At query time
the verified candidates' rows expand the query: an image that verifies strongly against the
query's best matches rises even where the query itself matched it weakly or not at all (another
side of the same item, another page under different light). Rows of images added later are
computed by the next run; ``rebuild`` recomputes every row so old rows list the new images too.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text

from app import store
from app.methods import Method
from app.registry import ModelSpec
from app.search import direct_scores, effective_method, stored_query

BATCH = 32


class GraphError(ValueError):
    pass


def candidate_ids(engine: Engine, spec: ModelSpec, method: Method) -> list[int]:
    """Images with the method's vectors and local features."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT DISTINCT e.image_id FROM {spec.table} e JOIN local_features f "
            f"ON f.image_id = e.image_id AND f.kind = :kind WHERE e.method = :m ORDER BY e.image_id"),
            {"kind": method.local.name, "m": method.stored})
        return [r[0] for r in rows]


def build_graph(engine: Engine, spec: ModelSpec, method: Method, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None, among: list[int] | None = None) -> dict:
    """Compute the rows of images without one (every row with ``rebuild``); ``progress`` gets
    (images done, images to do).

    ``among`` restricts the graph to a part of the collection: rows of those images, neighbours
    among them (an evaluation's collection when the database holds more).
    """
    if method.local is None:
        raise GraphError(f"method {method.name} does not verify: use one with +sift or +orb (e.g. verified)")
    ids = candidate_ids(engine, spec, method)
    if among is not None:
        wanted = set(among)
        ids = [i for i in ids if i in wanted]
    if not rebuild:
        with engine.connect() as conn:
            done = store.graph_ids(conn, spec.name, method.local.name)
        ids = [i for i in ids if i not in done]
    edges = 0
    for start in range(0, len(ids), BATCH):
        rows = []
        with engine.begin() as conn:
            for image_id in ids[start:start + BATCH]:
                query = stored_query(conn, image_id, spec, method)
                row = direct_scores(conn, spec, method, query, among) if query is not None else {}
                rows.append((image_id, row))
                edges += len(row)
            store.write_graph(conn, spec.name, method.local.name, rows)
        if progress:
            progress(start + len(rows), len(ids))
    return {"model": spec.name, "kind": method.local.name, "method": method.canonical,
            "images": len(ids), "edges": edges}


def update_graph(engine: Engine, spec: ModelSpec, method: Method, rebuild: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict | None:
    """Rows for the new images (all with ``rebuild``) of a verifying method as the collection
    resolves it (``verified`` whitens once fitted); None for other methods."""
    with engine.connect() as conn:
        method = effective_method(conn, spec, method)
    return build_graph(engine, spec, method, rebuild, progress) if method.local else None
