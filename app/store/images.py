"""Rows of ``images`` (one per content hash in a collection) and ``failures`` (one per path)."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text


def image_ids_by_sha(conn: Connection, collection: int, shas: Sequence[str], lock: bool = False) -> dict[str, int]:
    """sha -> image id in the collection; ``lock`` keeps the rows from being deleted until the
    transaction ends (before files are pointed at them)."""
    if not shas:
        return {}
    sql = "SELECT sha256, id FROM images WHERE collection_id = :c AND sha256 = ANY(:shas)"
    rows = conn.execute(text(sql + (" ORDER BY id FOR KEY SHARE" if lock else "")),
                        {"c": collection, "shas": sorted(set(shas))})
    return {sha: image_id for sha, image_id in rows}


def insert_images(conn: Connection, collection: int, rows: list[dict]) -> tuple[dict[str, int], int]:
    """Insert image rows (sha256, width, height) once per content in the collection; return
    (sha -> id, how many rows this statement inserted: images another job stored are not new)."""
    rows = sorted(rows, key=lambda r: r["sha256"])  # one lock order for concurrent jobs
    inserted = 0
    if rows:
        columns = ("sha256", "width", "height")
        result = conn.execute(
            text("INSERT INTO images (collection_id, sha256, width, height) "
                 "SELECT :c, * FROM unnest(CAST(:sha256 AS text[]), CAST(:width AS int[]), CAST(:height AS int[])) "
                 "ON CONFLICT (collection_id, sha256) DO NOTHING RETURNING id"),
            {"c": collection, **{c: [r[c] for r in rows] for c in columns}})
        inserted = len(result.all())
    return image_ids_by_sha(conn, collection, [r["sha256"] for r in rows], lock=True), inserted


def image_in_collection(conn: Connection, collection: int, image_id: int) -> bool:
    return conn.execute(text("SELECT EXISTS (SELECT 1 FROM images WHERE id = :id AND collection_id = :c)"),
                        {"id": int(image_id), "c": collection}).scalar()


MAX_FAILURE_PATH = 500  # characters kept of a path too long to be indexed


def record_failure(conn: Connection, collection: int, path: str, reason: str) -> None:
    """Keep one row per (collection, path): the latest reason."""
    if len(path.encode()) > 4 * MAX_FAILURE_PATH:
        path = path[:MAX_FAILURE_PATH] + "…"
    clear_failures(conn, collection, [path])
    conn.execute(text("INSERT INTO failures (collection_id, path, reason) VALUES (:c, :p, :r)"),
                 {"c": collection, "p": path, "r": reason})


def clear_failures(conn: Connection, collection: int, paths: Sequence[str]) -> None:
    if paths:
        conn.execute(text("DELETE FROM failures WHERE collection_id = :c AND path = ANY(:paths)"),
                     {"c": collection, "paths": list(paths)})


def clear_failures_under(conn: Connection, collection: int, lo: str, hi: str, before) -> int:
    """Forget failures of files below a folder recorded before a sync started (their files are
    gone or have been ingested since)."""
    return conn.execute(text("DELETE FROM failures WHERE collection_id = :c AND path COLLATE \"C\" >= :lo "
                             "AND path COLLATE \"C\" < :hi "
                             "AND failed_at < :t"), {"c": collection, "lo": lo, "hi": hi, "t": before}).rowcount


def list_failures(conn: Connection, collection: int | None = None) -> list[dict]:
    """Failures of one collection (all with None), oldest first, with the collection's name."""
    rows = conn.execute(text("SELECT c.name AS collection, x.path, x.reason, x.failed_at FROM failures x "
                             "JOIN collections c ON c.id = x.collection_id "
                             "WHERE CAST(:c AS integer) IS NULL OR x.collection_id = :c ORDER BY x.failed_at, x.id"),
                        {"c": collection})
    return [dict(r._mapping) for r in rows]


def image_record(conn: Connection, image_id: int) -> dict | None:
    """One stored image: its collection, content hash, size and every file holding it (path,
    bytes, label), or None."""
    row = conn.execute(text("SELECT i.id, c.name AS collection, i.sha256, i.width, i.height FROM images i "
                            "JOIN collections c ON c.id = i.collection_id WHERE i.id = :i"), {"i": image_id}).first()
    if row is None:
        return None
    files = conn.execute(text("SELECT path, size, label FROM files WHERE image_id = :i ORDER BY path"),
                         {"i": image_id}).all()
    return {**row._asdict(), "files": [f._asdict() for f in files]}
