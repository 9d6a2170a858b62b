"""Rows of ``files``: one per (collection, path), pointing at the image (content) it holds.

An image lives as long as one of its files does: every statement here that removes or
re-points files deletes, in the same transaction, the images left without a file (their
vectors, local features and match-graph rows go with them, by foreign key).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

CHUNK = 10_000  # paths per lookup


@dataclass(frozen=True)
class Known:
    """What the collection knows of a path."""
    image_id: int
    sha: str
    size: int | None
    mtime_ns: int | None


@dataclass(frozen=True)
class FileRow:
    path: str  # stored text (``app.files.paths.path_text``)
    sha: str
    size: int | None
    mtime_ns: int | None
    label: str | None  # None keeps the stored label


def under_range(prefix: str) -> tuple[str, str]:
    """Bounds of the paths below a folder, for ``path >= lo AND path < hi`` (an index range on
    the byte-ordered column): every path that starts with ``prefix/``."""
    prefix = prefix.rstrip("/") + "/"
    return prefix, prefix[:-1] + "0"  # '0' is the character after '/'


def known_files(conn: Connection, collection: int, paths: Sequence[str]) -> dict[str, Known]:
    out = {}
    for start in range(0, len(paths), CHUNK):
        rows = conn.execute(text(
            "SELECT f.path, f.image_id, i.sha256, f.size, f.mtime_ns FROM files f JOIN images i ON i.id = f.image_id "
            "WHERE f.collection_id = :c AND f.path = ANY(:paths)"), {"c": collection, "paths": list(paths[start:start + CHUNK])})
        out.update({r.path: Known(r.image_id, r.sha256, r.size, r.mtime_ns) for r in rows})
    return out


def upsert_files(conn: Connection, collection: int, rows: Sequence[FileRow], ids: dict[str, int]) -> int:
    """Record files (``ids``: sha -> image id in the collection), seen now; a path that held other
    content points at the new image, and an image left without files is deleted. Rows whose
    content is not in ``ids`` are left out; returns how many were written."""
    rows = sorted((r for r in rows if r.sha in ids), key=lambda r: r.path)  # one lock order
    if not rows:
        return 0
    paths = [r.path for r in rows]
    before = conn.execute(text("SELECT image_id FROM files WHERE collection_id = :c AND path = ANY(:p)"),
                          {"c": collection, "p": paths}).scalars().all()
    conn.execute(text(
        "INSERT INTO files (collection_id, path, image_id, size, mtime_ns, label, seen_at) "
        "SELECT :c, * , now() FROM unnest(CAST(:path AS text[]), CAST(:image AS bigint[]), CAST(:size AS bigint[]), "
        "CAST(:mtime AS bigint[]), CAST(:label AS text[])) "
        "ON CONFLICT (collection_id, path) DO UPDATE SET image_id = EXCLUDED.image_id, size = EXCLUDED.size, "
        "mtime_ns = EXCLUDED.mtime_ns, label = COALESCE(EXCLUDED.label, files.label), seen_at = now()"),
        {"c": collection, "path": paths, "image": [ids[r.sha] for r in rows], "size": [r.size for r in rows],
         "mtime": [r.mtime_ns for r in rows], "label": [r.label for r in rows]})
    prune_images(conn, set(before) - set(ids.values()))
    return len(rows)


def prune_images(conn: Connection, ids) -> int:
    """Delete those of ``ids`` that no file holds any more (with everything stored for them)."""
    ids = sorted(int(i) for i in ids)
    if not ids:
        return 0
    result = conn.execute(text("DELETE FROM images i WHERE i.id = ANY(:ids) AND NOT EXISTS "
                               "(SELECT 1 FROM files f WHERE f.image_id = i.id)"), {"ids": ids})
    return result.rowcount


def remove_files(conn: Connection, collection: int, paths: Sequence[str] = (), under: Sequence[str] = (),
                 unseen_since: datetime | None = None) -> tuple[list[str], int]:
    """Delete the files named in ``paths`` and those below the folders ``under`` (only those not
    seen since ``unseen_since``, when given: a sync); returns (removed paths, images deleted)."""
    clauses, params = [], {"c": collection, "paths": list(paths)}
    if paths:
        clauses.append("path = ANY(:paths)")
    for n, folder in enumerate(under):
        params[f"lo{n}"], params[f"hi{n}"] = under_range(folder)
        clauses.append(f"(path >= :lo{n} AND path < :hi{n})")
    if not clauses:
        return [], 0
    sql = f"DELETE FROM files WHERE collection_id = :c AND ({' OR '.join(clauses)})"
    if unseen_since is not None:
        sql += " AND seen_at < :since"
        params["since"] = unseen_since
    removed = conn.execute(text(sql + " RETURNING path, image_id"), params).all()
    return sorted(r.path for r in removed), prune_images(conn, {r.image_id for r in removed})


def file_info(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[list[str], str | None]]:
    """image id -> (its paths in byte order, the label of the first labelled one)."""
    rows = conn.execute(text("SELECT image_id, array_agg(path ORDER BY path) AS paths, "
                             "(array_agg(label ORDER BY path) FILTER (WHERE label IS NOT NULL))[1] AS label "
                             "FROM files WHERE image_id = ANY(:ids) GROUP BY image_id"),
                        {"ids": [int(i) for i in ids]})
    return {r.image_id: (list(r.paths), r.label) for r in rows}


def exact_copies(conn: Connection, collection: int) -> list[list[dict]]:
    """Images held by more than one file: [{id, path, label}] per image, largest first."""
    rows = conn.execute(text(
        "SELECT image_id, array_agg(path ORDER BY path) AS paths, array_agg(label ORDER BY path) AS labels "
        "FROM files WHERE collection_id = :c GROUP BY image_id HAVING count(*) > 1 "
        "ORDER BY count(*) DESC, image_id"), {"c": collection})
    return [[{"id": r.image_id, "path": p, "label": lab} for p, lab in zip(r.paths, r.labels)] for r in rows]


def files_of(conn: Connection, collection: int, paths: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """Stored path -> (image id, label), for the given paths of a collection."""
    rows = conn.execute(text("SELECT path, image_id, label FROM files WHERE collection_id = :c AND path = ANY(:p)"),
                        {"c": collection, "p": list(paths)})
    return {r.path: (r.image_id, r.label) for r in rows}


def images_labelled(conn: Connection, collection: int, label: str) -> int:
    """How many of the collection's images have a file with ``label``."""
    return conn.execute(text("SELECT count(DISTINCT image_id) FROM files WHERE collection_id = :c AND label = :l"),
                        {"c": collection, "l": label}).scalar()


def labelled_paths(conn: Connection, collection: int) -> list[tuple[str, int, str]]:
    """(path, image id, label) of the collection's labelled files, in path order."""
    return [tuple(r) for r in conn.execute(text(
        "SELECT path, image_id, label FROM files WHERE collection_id = :c AND label IS NOT NULL ORDER BY path"),
        {"c": collection})]
