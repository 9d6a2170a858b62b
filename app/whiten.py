"""PCA-whitening learned on the user's own collection (unsupervised).

Fitted on the stored whole-image vectors of one model and descriptor, kept in the
``whitening`` table with a version, and applied to every stored vector (``<descriptor>+w``
rows, regions included) and to queries; augmented ``+w+dba`` rows are recomputed after a refit.
Every principal axis is kept and scaled by 1/sqrt(eigenvalue + mean eigenvalue): the
shrinkage stops the many near-zero axes of a small collection from amplifying noise (unshrunk,
whitening fitted on 56 or 150 images makes retrieval far worse; shrunk, it helps or is neutral). At least ``MIN_IMAGES`` images are needed.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import Engine

from app import store
from app.embedder import l2_normalize
from app.registry import ModelSpec

MIN_IMAGES = 50


class WhiteningError(ValueError):
    pass


def fit(vectors: np.ndarray, out_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """mean (d,) and projection (out_dim, d): principal axes scaled by 1/sqrt(eigenvalue + mean eigenvalue)."""
    mean = vectors.mean(axis=0)
    centred = (vectors - mean).astype(np.float64)
    cov = centred.T @ centred / len(vectors)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][: min(out_dim, len(vectors) - 1)]
    eigval = np.maximum(eigval[order], 0.0)
    shrunk = eigval + eigval.mean()
    projection = np.zeros((out_dim, vectors.shape[1]), np.float32)
    projection[: len(order)] = (eigvec[:, order] / np.sqrt(shrunk)).T
    return mean.astype(np.float32), projection


def apply(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    return l2_normalize((np.atleast_2d(vectors) - mean) @ projection.T)


def whiten_collection(engine: Engine, spec: ModelSpec, descriptor: str, min_images: int = MIN_IMAGES,
                      fit_ids: list[int] | None = None) -> dict:
    """Fit on the stored ``descriptor`` vectors (all, or ``fit_ids``) and (re)write every ``descriptor+w`` row."""
    target = f"{descriptor}+w"
    with engine.begin() as conn:
        ids, vectors = store.stored_vectors(conn, spec, descriptor, fit_ids)
        if len(ids) < min_images:
            raise WhiteningError(f"{spec.name}/{descriptor}: {len(ids)} images stored; whitening needs at least "
                                 f"{min_images} (fitted on fewer it hurts retrieval)")
        mean, projection = fit(vectors, spec.dim)
        version = store.save_whitening(conn, spec.name, descriptor, len(ids), mean, projection)
        region_ids, region_vectors = store.stored_vectors(conn, spec, descriptor, regions=True)
        regions = _region_numbers(region_ids)
        store.drop_index(conn, spec, target)
        store.delete_embeddings(conn, spec, target)
        whitened = apply(region_vectors, mean, projection)
        store.write_embeddings(conn, spec, target, list(zip(region_ids, regions, whitened)))
        store.ensure_index(conn, spec, target)
        if store.count_embeddings(conn, spec, f"{target}+dba"):  # augmented rows follow the new fit
            from app.dba import augment_rows

            augment_rows(conn, spec, target)
    return {"model": spec.name, "method": target, "version": version, "n_images": len(ids)}


def _region_numbers(ids: list[int]) -> list[int]:
    """Rows come ordered by (image_id, region): number them within each image."""
    out, previous, n = [], None, 0
    for image_id in ids:
        n = n + 1 if image_id == previous else 0
        out.append(n)
        previous = image_id
    return out
