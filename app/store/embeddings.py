"""Rows of the per-model embedding tables, and their HNSW indexes.

Each table is named by the model registry (``ModelSpec.table``); its rows are keyed by
(image, method, region): region 0 is the whole image, others are regional vectors.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, text

from app.config import get_settings
from app.describe.registry import ModelSpec
from app.store.ddl import INDEX_KINDS, create_index_sql, drop_index_sql, hnsw_build_bytes, index_name
from app.store.locks import index_lock

_STAGING = "imgsim_staging"
log = logging.getLogger("imgsim")


def as_array(value) -> np.ndarray:
    """A loaded pgvector value (numpy array, or HalfVector for ``halfvec``) -> float32 array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def embedded_ids(conn: Connection, spec: ModelSpec, method: str, ids: Iterable[int]) -> set[int]:
    ids = list(ids)
    if not ids:
        return set()
    sql = text(f"SELECT DISTINCT image_id FROM {spec.table} WHERE method = :m AND image_id = ANY(:ids)")
    return {row[0] for row in conn.execute(sql, {"m": method, "ids": ids})}


def write_embeddings(conn: Connection, spec: ModelSpec, method: str,
                     rows: Sequence[tuple[int, int, np.ndarray]]) -> int:
    """(image_id, region, vector) rows by binary COPY into a staging table, then inserted where new.

    Returns the number of images that got rows.
    """
    if not rows:
        return 0
    raw = conn.connection.driver_connection
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "
                         f"(image_id bigint, region smallint, embedding vector) ON COMMIT DELETE ROWS")
    with raw.cursor() as cur:
        cur.execute(f"TRUNCATE {_STAGING}")
        with cur.copy(f"COPY {_STAGING} (image_id, region, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int2", "vector"])
            for image_id, region, vector in rows:
                copy.write_row([int(image_id), int(region), np.asarray(vector, dtype=np.float32)])
    result = conn.execute(
        text(f"INSERT INTO {spec.table} (image_id, method, region, embedding) "
             f"SELECT image_id, :m, region, embedding FROM {_STAGING} ORDER BY image_id, region "
             f"ON CONFLICT DO NOTHING RETURNING image_id"),
        {"m": method},
    )
    return len({r[0] for r in result})


def _in_collection(collection: int | None, column: str = "image_id") -> str:
    """A condition keeping rows of one collection's images (nothing when ``collection`` is None)."""
    if collection is None:
        return ""
    return f" AND {column} IN (SELECT id FROM images WHERE collection_id = :collection)"


def delete_embeddings(conn: Connection, spec: ModelSpec, method: str, collection: int | None = None) -> None:
    conn.execute(text(f"DELETE FROM {spec.table} WHERE method = :m" + _in_collection(collection)), {"m": method, "collection": collection})


def stored_vectors(conn: Connection, spec: ModelSpec, method: str, ids: Sequence[int] | None = None,
                   regions: bool = False, collection: int | None = None) -> tuple[list[int], np.ndarray]:
    """Stored vectors of a model as (image ids, float32 matrix) ordered by (image, region):
    whole-image rows unless ``regions``; of the given images, or of a collection's."""
    sql = f"SELECT image_id, embedding FROM {spec.table} WHERE method = :m" + _in_collection(collection)
    params: dict = {"m": method, "collection": collection}
    if not regions:
        sql += " AND region = 0"
    if ids is not None:
        sql += " AND image_id = ANY(:ids)"
        params["ids"] = [int(i) for i in ids]
    rows = conn.execute(text(sql + " ORDER BY image_id, region"), params).all()
    if not rows:
        return [], np.zeros((0, spec.dim), np.float32)
    return [r[0] for r in rows], np.stack([as_array(r[1]) for r in rows])


def summed_vector(conn: Connection, spec: ModelSpec, method: str, ids: Sequence[int]) -> np.ndarray:
    """The sum of the given images' whole-image vectors, added up in the database (one vector
    comes back, not one per image); zeros when none is stored."""
    row = conn.execute(text(f"SELECT sum(embedding) FROM {spec.table} WHERE method = :m AND region = 0 "
                            f"AND image_id = ANY(:ids)"), {"m": method, "ids": [int(i) for i in ids]}).scalar()
    return np.zeros(spec.dim, np.float32) if row is None else as_array(row)


def has_embeddings(conn: Connection, spec: ModelSpec, method: str, collection: int | None = None) -> bool:
    return conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {spec.table} WHERE method = :m"
                             f"{_in_collection(collection)})"), {"m": method, "collection": collection}).scalar()


def count_embeddings(conn: Connection, spec: ModelSpec, method: str, collection: int | None = None) -> int:
    return conn.execute(text(f"SELECT count(*) FROM {spec.table} WHERE method = :m" + _in_collection(collection)),
                        {"m": method, "collection": collection}).scalar()


def count_images(conn: Connection, spec: ModelSpec, method: str, collection: int | None = None) -> int:
    """Images with a whole-image ``method`` row in the model's table (of one collection, or all)."""
    return conn.execute(text(f"SELECT count(*) FROM {spec.table} WHERE method = :m AND region = 0"
                             + _in_collection(collection)), {"m": method, "collection": collection}).scalar()


def ids_without(conn: Connection, spec: ModelSpec, source: str, target: str, collection: int | None = None) -> list[int]:
    """Images with a whole-image ``source`` row but no ``target`` row (rows an upkeep step still owes)."""
    rows = conn.execute(text(
        f"SELECT image_id FROM {spec.table} WHERE method = :s AND region = 0{_in_collection(collection)} EXCEPT "
        f"SELECT image_id FROM {spec.table} WHERE method = :t"), {"s": source, "t": target, "collection": collection})
    return sorted(r[0] for r in rows)


def drop_index(conn: Connection, spec: ModelSpec, method: str) -> None:
    """Drop the (table, method) HNSW index until the transaction's bulk load is done."""
    index_lock(conn, spec.table, method)
    conn.exec_driver_sql(drop_index_sql(spec.table, method))


def has_index(conn: Connection, spec: ModelSpec, method: str) -> bool:
    """Whether the (table, method) HNSW index exists (a catalog lookup: takes no table lock)."""
    return conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"),
                        {"name": index_name(spec.table, method)}).scalar()


def ensure_index(conn: Connection, spec: ModelSpec, method: str) -> bool:
    """Build the (table, method) HNSW index if it is missing; True when it was built."""
    if has_index(conn, spec, method):
        return False
    index_lock(conn, spec.table, method)
    rows, kind = count_embeddings(conn, spec, method), index_kind(conn, spec, method)
    sized = size_index_build(conn, rows, spec.dim, kind)
    started, ef_construction = time.perf_counter(), get_settings().hnsw_ef_construction
    conn.exec_driver_sql(create_index_sql(spec.table, spec.dim, method, kind, ef_construction))
    log.info("built the %s HNSW index of %s/%s over %d rows in %.1f s (maintenance_work_mem %s kB, "
             "%s parallel workers, ef_construction %d)", kind, spec.name, method, rows, time.perf_counter() - started,
             sized["maintenance_work_mem"], sized["max_parallel_maintenance_workers"], ef_construction)
    return True


class IndexKindError(ValueError):
    pass


def index_kind(conn: Connection, spec: ModelSpec, method: str) -> str:
    """The kind of the (model, method) index: ``vector`` unless ``set_index_kind`` chose another."""
    return conn.execute(text("SELECT kind FROM index_kinds WHERE model = :model AND method = :method"),
                        {"model": spec.name, "method": method}).scalar() or "vector"


def set_index_kind(conn: Connection, spec: ModelSpec, method: str, kind: str) -> bool:
    """Keep (model, method)'s index in ``kind`` from now on, rebuilding it when it exists in
    another; True when it was rebuilt. ``binary`` only for whitened (centred) vectors."""
    if kind not in INDEX_KINDS:
        raise IndexKindError(f"unknown index kind {kind!r}: choose one of {', '.join(INDEX_KINDS)}")
    if kind == "binary" and "+w" not in method:
        raise IndexKindError(f"a binary index needs centred vectors: {method} is not whitened (use e.g. "
                             f"{method.split('+')[0]}+w after imgsim index whiten)")
    index_lock(conn, spec.table, method)
    if index_kind(conn, spec, method) == kind:
        return False
    conn.execute(text("DELETE FROM index_kinds WHERE model = :model AND method = :method"),
                 {"model": spec.name, "method": method})
    if kind != "vector":
        conn.execute(text("INSERT INTO index_kinds (model, method, kind) VALUES (:model, :method, :kind)"),
                     {"model": spec.name, "method": method, "kind": kind})
    if not has_index(conn, spec, method):
        return False
    conn.exec_driver_sql(drop_index_sql(spec.table, method))
    return ensure_index(conn, spec, method)


def size_index_build(conn: Connection, rows: int, dim: int, kind: str = "vector") -> dict[str, str]:
    """Give this transaction's index build the memory its graph needs (at least the server's
    64 MB default, at most IMGSIM_INDEX_MEMORY_MB) and IMGSIM_INDEX_WORKERS parallel workers.
    Returns the settings as the server took them (memory in kB)."""
    settings = get_settings()
    kib = max(64 * 1024, min(hnsw_build_bytes(rows, dim, kind) // 1024, settings.index_memory_mb * 1024))
    conn.execute(text("SELECT set_config('maintenance_work_mem', :m, true), "
                      "set_config('max_parallel_maintenance_workers', :w, true)"),
                 {"m": f"{kib}kB", "w": str(settings.index_workers)})
    return dict(conn.execute(text("SELECT name, setting FROM pg_settings WHERE name IN "
                                  "('maintenance_work_mem', 'max_parallel_maintenance_workers')")).all())
