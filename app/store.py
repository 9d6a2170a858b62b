"""Reads and writes of images, embeddings and failures. Table names come from the registry only."""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, text

from app.methods import Method
from app.registry import ModelSpec
from app.schema import create_index_sql, index_name


def as_array(value) -> np.ndarray:
    """A pgvector value as loaded by pgvector-python (Vector, HalfVector or array) -> float32 array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def image_ids_by_sha(conn: Connection, shas: Sequence[str]) -> dict[str, int]:
    if not shas:
        return {}
    rows = conn.execute(text("SELECT sha256, id FROM images WHERE sha256 = ANY(:shas)"), {"shas": list(shas)})
    return {sha: image_id for sha, image_id in rows}


def embedded_ids(conn: Connection, spec: ModelSpec, method: Method, ids: Iterable[int]) -> set[int]:
    ids = list(ids)
    if not ids:
        return set()
    sql = text(f"SELECT image_id FROM {spec.table} WHERE method = :m AND image_id = ANY(:ids)")
    return {row[0] for row in conn.execute(sql, {"m": method.name, "ids": ids})}


def insert_images(conn: Connection, rows: list[dict]) -> dict[str, int]:
    """Insert image rows (sha256, path, width, height, label) once per content; return sha -> id."""
    if rows:
        conn.execute(
            text("INSERT INTO images (sha256, path, width, height, label) "
                 "VALUES (:sha256, :path, :width, :height, :label) ON CONFLICT (sha256) DO NOTHING"),
            rows,
        )
    return image_ids_by_sha(conn, [r["sha256"] for r in rows])


def set_labels(conn: Connection, labels: dict[str, str]) -> None:
    """Set labels by content hash where they differ."""
    if labels:
        conn.execute(
            text("UPDATE images SET label = :label WHERE sha256 = :sha AND label IS DISTINCT FROM :label"),
            [{"sha": sha, "label": label} for sha, label in labels.items()],
        )


def write_embeddings(conn: Connection, spec: ModelSpec, method: Method,
                     ids: Sequence[int], vectors: np.ndarray) -> int:
    """Binary COPY into a staging table, then insert what is not stored yet. Returns rows inserted."""
    if len(ids) == 0:
        return 0
    from pgvector.psycopg import register_vector

    raw = conn.connection.driver_connection
    register_vector(raw)
    staging = "imgsim_staging"
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (image_id bigint, embedding vector) ON COMMIT DELETE ROWS")
    with raw.cursor() as cur:
        cur.execute(f"TRUNCATE {staging}")
        with cur.copy(f"COPY {staging} (image_id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for image_id, vector in zip(ids, vectors):
                copy.write_row([int(image_id), np.asarray(vector, dtype=np.float32)])
    result = conn.execute(
        text(f"INSERT INTO {spec.table} (image_id, method, embedding) "
             f"SELECT image_id, :m, embedding FROM {staging} ON CONFLICT DO NOTHING"),
        {"m": method.name},
    )
    return result.rowcount


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


def count_embeddings(conn: Connection, spec: ModelSpec, method: Method) -> int:
    return conn.execute(text(f"SELECT count(*) FROM {spec.table} WHERE method = :m"), {"m": method.name}).scalar()


def _lock_key(spec: ModelSpec, method: Method) -> int:
    return zlib.crc32(f"{spec.table}:{method.name}".encode())


def drop_index(conn: Connection, spec: ModelSpec, method: Method) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(spec, method)})
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index_name(spec.table, method.name)}")


def ensure_index(conn: Connection, spec: ModelSpec, method: Method) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(spec, method)})
    conn.exec_driver_sql(create_index_sql(spec.table, spec.dim, method.name))


def stored_vectors(conn: Connection, spec: ModelSpec, method: Method,
                   ids: Sequence[int] | None = None) -> tuple[list[int], np.ndarray]:
    """All (or the given) stored vectors of a model, as (ids, float32 matrix)."""
    from pgvector.psycopg import register_vector

    register_vector(conn.connection.driver_connection)
    sql = f"SELECT image_id, embedding FROM {spec.table} WHERE method = :m"
    params: dict = {"m": method.name}
    if ids is not None:
        sql += " AND image_id = ANY(:ids)"
        params["ids"] = list(ids)
    rows = conn.execute(text(sql + " ORDER BY image_id"), params).all()
    if not rows:
        return [], np.zeros((0, spec.dim), np.float32)
    return [r[0] for r in rows], np.stack([as_array(r[1]) for r in rows])


