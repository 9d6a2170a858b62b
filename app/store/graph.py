"""Rows of ``match_graph``: each image's spatially verified neighbours and their scores."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec


def write_graph(conn: Connection, model: str, kind: str,
                rows: Sequence[tuple[int, dict[int, float], dict[int, float] | None]], shortlist: str) -> None:
    """(image_id, {neighbour: score}, {neighbour: same-item confidence} or None) rows computed
    from the nearest ``shortlist`` vectors (a stored method), replacing earlier ones."""
    if rows:
        conn.execute(
            text("INSERT INTO match_graph (model, kind, image_id, neighbours, scores, confidences, shortlist) "
                 "VALUES (:model, :kind, :image_id, :neighbours, :scores, :confidences, :shortlist) "
                 "ON CONFLICT (model, kind, image_id) DO UPDATE SET neighbours = EXCLUDED.neighbours, "
                 "scores = EXCLUDED.scores, confidences = EXCLUDED.confidences, shortlist = EXCLUDED.shortlist, "
                 "built_at = now()"),
            [{"model": model, "kind": kind, "image_id": int(i), "neighbours": [int(n) for n in row],
              "scores": [float(s) for s in row.values()],
              "confidences": None if sure is None else [float(sure[n]) for n in row],
              "shortlist": shortlist} for i, row, sure in sorted(rows, key=lambda r: r[0])])


def current_row(conn: Connection, model: str, kind: str, image_id: int, shortlist: str, collection: int,
                whitened: str | None) -> dict[int, float] | None:
    """The image's row if it was computed from the ``shortlist`` vectors after the collection's
    ``whitened`` descriptor (the fit those vectors come from; None: unwhitened) was last
    fitted, so verifying the image's shortlist now would give it again; else None."""
    row = conn.execute(
        text("SELECT g.neighbours, g.scores FROM match_graph g "
             "WHERE g.model = :model AND g.kind = :kind AND g.image_id = :id AND g.shortlist = :shortlist "
             "AND g.built_at >= coalesce((SELECT w.fitted_at FROM whitening w WHERE w.collection_id = :c "
             "AND w.model = :model AND w.method = :whitened), '-infinity')"),
        {"model": model, "kind": kind, "id": int(image_id), "shortlist": shortlist, "c": collection,
         "whitened": whitened}).first()
    return None if row is None else dict(zip(row.neighbours, row.scores))


def load_graph(conn: Connection, model: str, kind: str, ids: Sequence[int]) -> dict[int, dict[int, float]]:
    """The neighbours of ``ids``, each edge read from both sides: an image's own row and the
    rows that list it, at the better of the two scores where both do (images that neither have a
    row nor are listed in one are absent)."""
    rows = conn.execute(text("SELECT image_id, neighbours, scores FROM match_graph "
                             "WHERE model = :model AND kind = :kind AND image_id = ANY(:ids)"),
                        {"model": model, "kind": kind, "ids": [int(i) for i in ids]})
    graph = {r.image_id: dict(zip(r.neighbours, r.scores)) for r in rows}
    for image_id, edges in listed_in(conn, model, kind, ids).items():
        graph[image_id] = both_ways(graph.get(image_id, {}), edges)
    return graph


def both_ways(row: dict[int, float], listed: dict[int, float]) -> dict[int, float]:
    """An image's neighbours from its own row and from the rows that list it (``listed``), each
    at the better score: a pair verified from either side is verified, and the side where it is
    not one of many matches on a shared background shows best how much the two images share."""
    return {**listed, **{n: max(s, listed.get(n, s)) for n, s in row.items()}}


def listed_in(conn: Connection, model: str, kind: str, ids: Sequence[int]) -> dict[int, dict[int, float]]:
    """For each of ``ids``, the images whose rows list it, with the score there (the edge as the
    other image verified it)."""
    rows = conn.execute(text("SELECT u.neighbour, g.image_id, u.score FROM match_graph g "
                             "CROSS JOIN LATERAL unnest(g.neighbours, g.scores) AS u(neighbour, score) "
                             "WHERE g.model = :model AND g.kind = :kind AND g.neighbours && CAST(:ids AS bigint[]) "
                             "AND u.neighbour = ANY(CAST(:ids AS bigint[]))"),
                        {"model": model, "kind": kind, "ids": [int(i) for i in ids]})
    out: dict[int, dict[int, float]] = {}
    for listed, image_id, score in rows:
        out.setdefault(listed, {})[image_id] = score
    return out


def graph_ids(conn: Connection, model: str, kind: str) -> set[int]:
    """The images with a current row (one built before confidences were stored is owed again)."""
    rows = conn.execute(text("SELECT image_id FROM match_graph WHERE model = :model AND kind = :kind "
                             "AND confidences IS NOT NULL"),
                        {"model": model, "kind": kind})
    return {r[0] for r in rows}


def verifiable_ids(conn: Connection, spec: ModelSpec, stored: str, kind: str, collection: int) -> list[int]:
    """The collection's images with ``stored`` vectors and ``kind`` local features (those a graph
    row can be built for)."""
    rows = conn.execute(text(
        f"SELECT DISTINCT e.image_id FROM {spec.table} e JOIN local_features f "
        f"ON f.image_id = e.image_id AND f.kind = :kind JOIN images i ON i.id = e.image_id "
        f"WHERE e.method = :m AND i.collection_id = :c ORDER BY e.image_id"),
        {"kind": kind, "m": stored, "c": collection})
    return [r[0] for r in rows]
