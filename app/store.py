"""Reads and writes of images, embeddings, local features, whitening and failures.

Table names come from the registry and method names from ``app.methods`` only; every
value travels as a bind parameter.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, text

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


def embedded_ids(conn: Connection, spec: ModelSpec, method: str, ids: Iterable[int]) -> set[int]:
    ids = list(ids)
    if not ids:
        return set()
    sql = text(f"SELECT DISTINCT image_id FROM {spec.table} WHERE method = :m AND image_id = ANY(:ids)")
    return {row[0] for row in conn.execute(sql, {"m": method, "ids": ids})}


def insert_images(conn: Connection, rows: list[dict]) -> dict[str, int]:
    """Insert image rows (sha256, path, width, height, label) once per content; return sha -> id."""
    rows = sorted(rows, key=lambda r: r["sha256"])  # one lock order for concurrent jobs
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


def write_embeddings(conn: Connection, spec: ModelSpec, method: str,
                     rows: Sequence[tuple[int, int, np.ndarray]]) -> int:
    """(image_id, region, vector) rows by binary COPY into a staging table, then inserted where new.

    Returns the number of images that got rows.
    """
    if not rows:
        return 0
    from pgvector.psycopg import register_vector

    raw = conn.connection.driver_connection
    register_vector(raw)
    staging = "imgsim_staging"
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
                         f"(image_id bigint, region smallint, embedding vector) ON COMMIT DELETE ROWS")
    with raw.cursor() as cur:
        cur.execute(f"TRUNCATE {staging}")
        with cur.copy(f"COPY {staging} (image_id, region, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int2", "vector"])
            for image_id, region, vector in rows:
                copy.write_row([int(image_id), int(region), np.asarray(vector, dtype=np.float32)])
    result = conn.execute(
        text(f"INSERT INTO {spec.table} (image_id, method, region, embedding) "
             f"SELECT image_id, :m, region, embedding FROM {staging} ORDER BY image_id, region "
             f"ON CONFLICT DO NOTHING "
             f"RETURNING image_id"),
        {"m": method},
    )
    return len({r[0] for r in result})


def delete_embeddings(conn: Connection, spec: ModelSpec, method: str) -> None:
    conn.execute(text(f"DELETE FROM {spec.table} WHERE method = :m"), {"m": method})


def stored_vectors(conn: Connection, spec: ModelSpec, method: str, ids: Sequence[int] | None = None,
                   regions: bool = False) -> tuple[list[int], np.ndarray]:
    """Stored vectors of a model as (image ids, float32 matrix); whole-image rows unless ``regions``."""
    from pgvector.psycopg import register_vector

    register_vector(conn.connection.driver_connection)
    sql = f"SELECT image_id, embedding FROM {spec.table} WHERE method = :m"
    params: dict = {"m": method}
    if not regions:
        sql += " AND region = 0"
    if ids is not None:
        sql += " AND image_id = ANY(:ids)"
        params["ids"] = list(ids)
    rows = conn.execute(text(sql + " ORDER BY image_id, region"), params).all()
    if not rows:
        return [], np.zeros((0, spec.dim), np.float32)
    return [r[0] for r in rows], np.stack([as_array(r[1]) for r in rows])


def has_embeddings(conn: Connection, spec: ModelSpec, method: str) -> bool:
    return conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {spec.table} WHERE method = :m)"), {"m": method}).scalar()


def count_embeddings(conn: Connection, spec: ModelSpec, method: str) -> int:
    return conn.execute(text(f"SELECT count(*) FROM {spec.table} WHERE method = :m"), {"m": method}).scalar()


# ---- local features ---------------------------------------------------------------------------
def local_ids(conn: Connection, kind: str, ids: Iterable[int]) -> set[int]:
    ids = list(ids)
    if not ids:
        return set()
    rows = conn.execute(text("SELECT image_id FROM local_features WHERE kind = :k AND image_id = ANY(:ids)"),
                        {"k": kind, "ids": ids})
    return {r[0] for r in rows}


def write_local(conn: Connection, kind: str, rows: Sequence[tuple[int, object]]) -> int:
    if not rows:
        return 0
    params = [{"image_id": int(i), "kind": kind, **features.to_row()} for i, features in rows]
    result = conn.execute(
        text("INSERT INTO local_features (image_id, kind, n, points, descriptors) "
             "VALUES (:image_id, :kind, :n, :points, :descriptors) ON CONFLICT DO NOTHING"), params)
    return result.rowcount


def load_local(conn: Connection, kind: str, ids: Sequence[int]) -> dict:
    from app.local import LocalFeatures

    rows = conn.execute(text("SELECT image_id, n, points, descriptors FROM local_features "
                             "WHERE kind = :k AND image_id = ANY(:ids)"), {"k": kind, "ids": list(ids)})
    return {r.image_id: LocalFeatures.from_row(r.n, r.points, r.descriptors) for r in rows}


# ---- whitening --------------------------------------------------------------------------------
def save_whitening(conn: Connection, model: str, method: str, n_images: int,
                   mean: np.ndarray, projection: np.ndarray) -> int:
    row = conn.execute(
        text("INSERT INTO whitening (model, method, version, n_images, dims, mean, projection) "
             "VALUES (:model, :method, 1, :n, :dims, :mean, :proj) "
             "ON CONFLICT (model, method) DO UPDATE SET version = whitening.version + 1, "
             "n_images = EXCLUDED.n_images, dims = EXCLUDED.dims, mean = EXCLUDED.mean, "
             "projection = EXCLUDED.projection, fitted_at = now() RETURNING version"),
        {"model": model, "method": method, "n": n_images, "dims": projection.shape[0],
         "mean": mean.astype(np.float32).tobytes(), "proj": projection.astype(np.float32).tobytes()})
    return row.scalar()


def has_whitening(conn: Connection, model: str, method: str) -> bool:
    return conn.execute(text("SELECT EXISTS (SELECT 1 FROM whitening WHERE model = :model AND method = :method)"),
                        {"model": model, "method": method}).scalar()


def load_whitening(conn: Connection, model: str, method: str):
    """(version, mean, projection) or None."""
    row = conn.execute(text("SELECT version, dims, mean, projection FROM whitening "
                            "WHERE model = :model AND method = :method"), {"model": model, "method": method}).first()
    if row is None:
        return None
    mean = np.frombuffer(row.mean, np.float32)
    return row.version, mean, np.frombuffer(row.projection, np.float32).reshape(row.dims, len(mean))


# ---- match graph ------------------------------------------------------------------------------
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


# ---- failures ---------------------------------------------------------------------------------
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


# ---- index maintenance ------------------------------------------------------------------------
def _lock_key(spec: ModelSpec, method: str) -> int:
    return zlib.crc32(f"{spec.table}:{method}".encode())


def drop_index(conn: Connection, spec: ModelSpec, method: str) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(spec, method)})
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index_name(spec.table, method)}")


def ensure_index(conn: Connection, spec: ModelSpec, method: str) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(spec, method)})
    conn.exec_driver_sql(create_index_sql(spec.table, spec.dim, method))
