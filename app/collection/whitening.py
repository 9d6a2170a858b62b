"""PCA-whitening learned on the user's own collection (unsupervised).

Fitted on the stored whole-image vectors of one collection, model and descriptor, kept in the
``whitening`` table with a version, and applied to every stored vector (``<descriptor>+w``
rows, regions included) and to queries; augmented ``+w+dba`` rows are recomputed after a refit.
The fit itself (with shrinkage) is ``app.describe.vectors.fit_whitening``. At least
``MIN_IMAGES`` images are needed.

An ingest with a method that whitens fits on its own (``fit_due``): first at ``AUTO_MIN_IMAGES``
images, twice the minimum (a fit on a few dozen photos can hurt: on 56 UKBench photos it cost
up to a quarter of the mAP), then again each time the collection has doubled since the fit, so
the fit follows what the collection holds at a cost that stays linear in its size.
"""
from __future__ import annotations

from sqlalchemy import Engine

from app.collection.dba import augment_rows
from app.describe.methods import augmented_name, whitened_name
from app.describe.registry import ModelSpec
from app.describe.vectors import apply_whitening, fit_whitening
from app.store import embeddings
from app.store.collections import Collection
from app.store.locks import job_lock, lock_table_for_rewrite, lock_tables_for_write
from app.store.retry import with_retry
from app.store.whitening import fitted_images, load_whitening, save_whitening

MIN_IMAGES = 50
AUTO_MIN_IMAGES = 2 * MIN_IMAGES
REFIT_GROWTH = 2


class WhiteningError(ValueError):
    pass


def whiten_collection(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str,
                      min_images: int = MIN_IMAGES, fit_ids: list[int] | None = None) -> dict:
    """Fit on the collection's stored ``descriptor`` vectors (all, or ``fit_ids``) and (re)write
    every ``descriptor+w`` row of the collection."""
    target = whitened_name(descriptor)
    with _whitening_job(engine, collection, spec, descriptor):
        return with_retry(lambda: _whiten(engine, collection, spec, descriptor, target, min_images, fit_ids))


def fit_due(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str) -> str | None:
    """Why an ingest should (re)fit the collection's whitening of ``descriptor`` now, or None."""
    with engine.connect() as conn:
        stored = embeddings.count_images(conn, spec, descriptor, collection.id)
        fitted = fitted_images(conn, collection.id, spec.name, descriptor)
    if fitted is None:
        return (f"first fit: {stored} images stored, an ingest fits from {AUTO_MIN_IMAGES}"
                if stored >= AUTO_MIN_IMAGES else None)
    if stored >= REFIT_GROWTH * fitted:
        return f"the collection grew from {fitted} to {stored} images since the last fit"
    return None


def _whitening_job(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str):
    """The lock every job that writes a collection's ``descriptor+w`` rows holds."""
    return job_lock(engine, spec.table, f"{collection.id}:{whitened_name(descriptor)}",
                    f"whitening of {spec.name}/{descriptor} in {collection.name}")


def _whiten(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str, target: str,
            min_images: int, fit_ids: list[int] | None) -> dict:
    with engine.begin() as conn:
        lock_table_for_rewrite(conn, spec.table)
        ids, vectors = embeddings.stored_vectors(conn, spec, descriptor, fit_ids, collection=collection.id)
        if len(ids) < min_images:
            raise WhiteningError(f"{spec.name}/{descriptor}: {len(ids)} images stored in {collection.name}; "
                                 f"whitening needs at least {min_images} (fitted on fewer it hurts retrieval)")
        mean, projection = fit_whitening(vectors, spec.dim)
        version = save_whitening(conn, collection.id, spec.name, descriptor, len(ids), mean, projection)
        region_ids, region_vectors = embeddings.stored_vectors(conn, spec, descriptor, regions=True,
                                                               collection=collection.id)
        embeddings.drop_index(conn, spec, target)
        embeddings.delete_embeddings(conn, spec, target, collection.id)
        whitened = apply_whitening(region_vectors, mean, projection)
        embeddings.write_embeddings(conn, spec, target, list(zip(region_ids, region_numbers(region_ids), whitened)))
        embeddings.ensure_index(conn, spec, target)
        if embeddings.has_embeddings(conn, spec, augmented_name(target), collection.id):  # they follow the new fit
            augment_rows(conn, collection.id, spec, target)
    return {"collection": collection.name, "model": spec.name, "method": target, "version": version,
            "n_images": len(ids)}


def whiten_missing(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str) -> int:
    """Write ``descriptor+w`` rows with the current fit for the images that have ``descriptor``
    rows but none whitened (a load that ran beside a refit, say); returns how many images."""
    target = whitened_name(descriptor)

    def transaction() -> int:
        with engine.begin() as conn:
            lock_tables_for_write(conn, [spec.table])
            fitted = load_whitening(conn, collection.id, spec.name, descriptor)
            missing = embeddings.ids_without(conn, spec, descriptor, target, collection.id)
            if fitted is None or not missing:
                return 0
            ids, vectors = embeddings.stored_vectors(conn, spec, descriptor, missing, regions=True)
            whitened = apply_whitening(vectors, fitted[1], fitted[2])
            embeddings.write_embeddings(conn, spec, target, list(zip(ids, region_numbers(ids), whitened)))
            return len(missing)

    with _whitening_job(engine, collection, spec, descriptor):
        return with_retry(transaction)


def region_numbers(ids: list[int]) -> list[int]:
    """Rows come ordered by (image_id, region): number them within each image."""
    out, previous, n = [], None, 0
    for image_id in ids:
        n = n + 1 if image_id == previous else 0
        out.append(n)
        previous = image_id
    return out
