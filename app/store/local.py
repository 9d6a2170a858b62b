"""Rows of ``local_features``: keypoints and descriptors per (image, kind)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, text

from app.describe.keypoints import KINDS, LocalFeatures


def local_ids(conn: Connection, kind: str, ids: Iterable[int]) -> set[int]:
    ids = list(ids)
    if not ids:
        return set()
    rows = conn.execute(text("SELECT image_id FROM local_features WHERE kind = :k AND image_id = ANY(:ids)"),
                        {"k": kind, "ids": ids})
    return {r[0] for r in rows}


def write_local(conn: Connection, kind: str, rows: Sequence[tuple[int, LocalFeatures]]) -> int:
    if not rows:
        return 0
    params = [{"image_id": int(i), "kind": kind, **features.to_row()} for i, features in rows]
    result = conn.execute(
        text("INSERT INTO local_features (image_id, kind, n, format, points, descriptors) "
             "VALUES (:image_id, :kind, :n, :format, :points, :descriptors) ON CONFLICT DO NOTHING"), params)
    return result.rowcount


def load_local(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, LocalFeatures]:
    rows = conn.execute(text("SELECT image_id, n, format, points, descriptors FROM local_features "
                             "WHERE kind = :k AND image_id = ANY(:ids)"), {"k": kind, "ids": [int(i) for i in ids]})
    return {r.image_id: LocalFeatures.from_row(r.n, r.points, r.descriptors, r.format, KINDS[kind]) for r in rows}
