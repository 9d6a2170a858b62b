"""Rows of ``images`` (one per content hash) and ``failures`` (one per path)."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text


def image_ids_by_sha(conn: Connection, shas: Sequence[str]) -> dict[str, int]:
    if not shas:
        return {}
    rows = conn.execute(text("SELECT sha256, id FROM images WHERE sha256 = ANY(:shas)"), {"shas": list(shas)})
    return {sha: image_id for sha, image_id in rows}


def insert_images(conn: Connection, rows: list[dict]) -> tuple[dict[str, int], int]:
    """Insert image rows (sha256, path, width, height, label) once per content; return
    (sha -> id, how many rows this statement inserted: images another job stored are not new)."""
    rows = sorted(rows, key=lambda r: r["sha256"])  # one lock order for concurrent jobs
    inserted = 0
    if rows:
        columns = ("sha256", "path", "width", "height", "label")
        result = conn.execute(
            text("INSERT INTO images (sha256, path, width, height, label) "
                 "SELECT * FROM unnest(CAST(:sha256 AS text[]), CAST(:path AS text[]), CAST(:width AS int[]), "
                 "CAST(:height AS int[]), CAST(:label AS text[])) ON CONFLICT (sha256) DO NOTHING RETURNING id"),
            {c: [r[c] for r in rows] for c in columns})
        inserted = len(result.all())
    return image_ids_by_sha(conn, [r["sha256"] for r in rows]), inserted


def set_labels(conn: Connection, labels: dict[str, str]) -> None:
    """Set labels by content hash where they differ."""
    if labels:
        conn.execute(
            text("UPDATE images SET label = :label WHERE sha256 = :sha AND label IS DISTINCT FROM :label"),
            [{"sha": sha, "label": label} for sha, label in labels.items()],
        )


def image_rows(conn: Connection, ids: Sequence[int]) -> dict[int, dict]:
    """id -> {id, path, label} of the given images."""
    rows = conn.execute(text("SELECT id, path, label FROM images WHERE id = ANY(:ids)"), {"ids": [int(i) for i in ids]})
    return {r.id: {"id": r.id, "path": r.path, "label": r.label} for r in rows}


def record_failure(conn: Connection, path: str, reason: str) -> None:
    """Keep one row per path: the latest reason."""
    clear_failures(conn, [path])
    conn.execute(text("INSERT INTO failures (path, reason) VALUES (:p, :r)"), {"p": path, "r": reason})


def clear_failures(conn: Connection, paths: Sequence[str]) -> None:
    if paths:
        conn.execute(text("DELETE FROM failures WHERE path = ANY(:paths)"), {"paths": list(paths)})


def list_failures(conn: Connection) -> list[dict]:
    rows = conn.execute(text("SELECT path, reason, failed_at FROM failures ORDER BY failed_at, id"))
    return [dict(r._mapping) for r in rows]
