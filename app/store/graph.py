"""Rows of ``match_graph``: each image's spatially verified neighbours and their scores."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec


def write_graph(conn: Connection, model: str, kind: str, rows: Sequence[tuple[int, dict[int, float]]]) -> None:
    """(image_id, {neighbour: score}) rows, replacing earlier ones."""
    if rows:
        conn.execute(
            text("INSERT INTO match_graph (model, kind, image_id, neighbours, scores) "
                 "VALUES (:model, :kind, :image_id, :neighbours, :scores) "
                 "ON CONFLICT (model, kind, image_id) DO UPDATE SET neighbours = EXCLUDED.neighbours, "
                 "scores = EXCLUDED.scores, built_at = now()"),
            [{"model": model, "kind": kind, "image_id": int(i), "neighbours": [int(n) for n in row],
              "scores": [float(s) for s in row.values()]} for i, row in sorted(rows)])


def load_graph(conn: Connection, model: str, kind: str, ids: Sequence[int]) -> dict[int, dict[int, float]]:
    """The stored neighbour rows of ``ids`` (images without a row are absent)."""
    rows = conn.execute(text("SELECT image_id, neighbours, scores FROM match_graph "
                             "WHERE model = :model AND kind = :kind AND image_id = ANY(:ids)"),
                        {"model": model, "kind": kind, "ids": [int(i) for i in ids]})
    return {r.image_id: dict(zip(r.neighbours, r.scores)) for r in rows}


def graph_ids(conn: Connection, model: str, kind: str) -> set[int]:
    rows = conn.execute(text("SELECT image_id FROM match_graph WHERE model = :model AND kind = :kind"),
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
