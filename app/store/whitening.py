"""Rows of ``whitening``: the fitted PCA-whitening of a (collection, model, descriptor), with a version."""
from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, text

_KEY = "collection_id = :c AND model = :model AND method = :method"


def save_whitening(conn: Connection, collection: int, model: str, method: str, n_images: int,
                   mean: np.ndarray, projection: np.ndarray) -> int:
    """Insert or replace the fit; returns its version (1, then +1 per refit)."""
    row = conn.execute(
        text("INSERT INTO whitening (collection_id, model, method, version, n_images, dims, mean, projection) "
             "VALUES (:c, :model, :method, 1, :n, :dims, :mean, :proj) "
             "ON CONFLICT (collection_id, model, method) DO UPDATE SET version = whitening.version + 1, "
             "n_images = EXCLUDED.n_images, dims = EXCLUDED.dims, mean = EXCLUDED.mean, "
             "projection = EXCLUDED.projection, fitted_at = now() RETURNING version"),
        {"c": collection, "model": model, "method": method, "n": n_images, "dims": projection.shape[0],
         "mean": mean.astype(np.float32).tobytes(), "proj": projection.astype(np.float32).tobytes()})
    return row.scalar()


def has_whitening(conn: Connection, collection: int, model: str, method: str) -> bool:
    return whitening_version(conn, collection, model, method) is not None


def whitening_version(conn: Connection, collection: int, model: str, method: str) -> int | None:
    return conn.execute(text(f"SELECT version FROM whitening WHERE {_KEY}"),
                        {"c": collection, "model": model, "method": method}).scalar()


def fitted_images(conn: Connection, collection: int, model: str, method: str) -> int | None:
    """How many images the current fit was computed on (None: not fitted)."""
    return conn.execute(text(f"SELECT n_images FROM whitening WHERE {_KEY}"),
                        {"c": collection, "model": model, "method": method}).scalar()


def load_whitening(conn: Connection, collection: int, model: str,
                   method: str) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(version, mean, projection) or None."""
    row = conn.execute(text(f"SELECT version, dims, mean, projection FROM whitening WHERE {_KEY}"),
                       {"c": collection, "model": model, "method": method}).first()
    if row is None:
        return None
    mean = np.frombuffer(row.mean, np.float32)
    return row.version, mean, np.frombuffer(row.projection, np.float32).reshape(row.dims, len(mean))


_READ: dict[tuple, tuple] = {}  # (database, collection, model, method) -> ((version, fitted_at), fit)


def current_whitening(conn: Connection, collection: int, model: str,
                      method: str) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(version, mean, projection) as committed now, or None; the fit (megabytes) is read again
    only when its version or time changed since this process last read it (a few bytes)."""
    stamp = conn.execute(text(f"SELECT version, fitted_at FROM whitening WHERE {_KEY}"),
                         {"c": collection, "model": model, "method": method}).first()
    if stamp is None:
        return None
    key = (str(conn.engine.url), collection, model, method)
    cached = _READ.get(key)
    if cached is None or cached[0] != tuple(stamp):
        fit = load_whitening(conn, collection, model, method)
        if fit is None:
            return None
        _READ[key] = cached = (tuple(stamp), fit)
    return cached[1]


def delete_whitening(conn: Connection, collection: int, model: str, method: str) -> None:
    conn.execute(text(f"DELETE FROM whitening WHERE {_KEY}"), {"c": collection, "model": model, "method": method})
