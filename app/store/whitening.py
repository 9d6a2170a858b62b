"""Rows of ``whitening``: the fitted PCA-whitening of a (model, descriptor), with a version."""
from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, text


def save_whitening(conn: Connection, model: str, method: str, n_images: int,
                   mean: np.ndarray, projection: np.ndarray) -> int:
    """Insert or replace the fit; returns its version (1, then +1 per refit)."""
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


def whitening_version(conn: Connection, model: str, method: str) -> int | None:
    return conn.execute(text("SELECT version FROM whitening WHERE model = :model AND method = :method"),
                        {"model": model, "method": method}).scalar()


def load_whitening(conn: Connection, model: str, method: str) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(version, mean, projection) or None."""
    row = conn.execute(text("SELECT version, dims, mean, projection FROM whitening "
                            "WHERE model = :model AND method = :method"), {"model": model, "method": method}).first()
    if row is None:
        return None
    mean = np.frombuffer(row.mean, np.float32)
    return row.version, mean, np.frombuffer(row.projection, np.float32).reshape(row.dims, len(mean))


def delete_whitening(conn: Connection, model: str, method: str) -> None:
    conn.execute(text("DELETE FROM whitening WHERE model = :model AND method = :method"),
                 {"model": model, "method": method})
