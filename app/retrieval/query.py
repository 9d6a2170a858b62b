"""A query (a stored image id, a stored file or a new file) -> its vectors in the searched space,
and its local features when the method verifies."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import Connection

from app.config import get_settings
from app.describe.backends import shared_network
from app.describe.embedder import Embedder, split_turned
from app.describe.keypoints import LocalFeatures, extract
from app.describe.methods import Method, get_method, with_collection
from app.describe.registry import ModelSpec, get_model
from app.describe.vectors import apply_whitening
from app.files.images import load_image, read_bytes, sha256
from app.store.embeddings import stored_vectors
from app.store.images import image_ids_by_sha, image_in_collection
from app.store.local import load_local
from app.store.turned import load_turned
from app.store.whitening import current_whitening, has_whitening


class QueryError(ValueError):
    pass


class MissingWhitening(QueryError):
    """A whitened method was asked for before a whitening was fitted."""

    def __init__(self, model: str, descriptor: str):
        super().__init__(f"no whitening fitted for {model}/{descriptor}")
        self.model, self.descriptor = model, descriptor


class NothingStored(QueryError):
    """A search found no stored vectors of its model and method in its collection (an empty
    answer is never silent)."""

    def __init__(self, model: str, method: Method, collection: str):
        super().__init__(f"no {model}/{method.stored} vectors are stored in collection {collection!r}")
        self.model, self.method, self.collection = model, method, collection


@dataclass
class Query:
    vectors: np.ndarray  # (R, dim) in the searched space; row 0 = whole image
    local: LocalFeatures | None = None
    image_id: int | None = None
    # (turns, dim): a new photo's whole image turned by a quarter each way, same space (a stored
    # image's are read where a shortlist needs them: ``stored_turned``)
    turned: np.ndarray | None = None


def effective_method(conn: Connection, collection: int, spec: ModelSpec, method: Method) -> Method:
    """Resolve an alias that depends on the collection (``verified`` whitens once a fit exists)."""
    return with_collection(method, has_whitening(conn, collection, spec.name, method.raw))


@lru_cache(maxsize=4)
def cached_embedder(model: str, method: str) -> Embedder:
    """One embedder per (model, method) for the life of the process, on the process's one network
    of the model."""
    spec = get_model(model)
    return Embedder(spec, get_method(method), network=shared_network(spec))


def whiten_query(conn: Connection, collection: int, spec: ModelSpec, method: Method,
                 vectors: np.ndarray) -> np.ndarray:
    if not method.whiten:
        return vectors
    fitted = current_whitening(conn, collection, spec.name, method.raw)
    if fitted is None:
        raise MissingWhitening(spec.name, method.raw)
    return apply_whitening(vectors, fitted[1], fitted[2])


def stored_query(conn: Connection, image_id: int, spec: ModelSpec, method: Method) -> Query | None:
    """A stored image as a query; None when it lacks the method's vectors or local features."""
    ids, vectors = stored_vectors(conn, spec, method.stored, [image_id], regions=method.descriptor.regions)
    if not ids:
        return None
    local = None
    if method.local:
        local = load_local(conn, method.local.name, [image_id]).get(image_id)
        if local is None:
            return None
    return Query(vectors, local, image_id)


def stored_turned(conn: Connection, image_id: int, spec: ModelSpec, method: Method) -> np.ndarray | None:
    """A stored image's turned vectors in the method's space (whitened with its collection's
    fit); None where none are stored (images ingested before they were)."""
    if not method.turns:
        return None
    found = load_turned(conn, spec.name, method.raw, spec.dim, image_id)
    if found is None:
        return None
    collection, turned = found
    return whiten_query(conn, collection, spec, method, turned)


def is_id(text: str) -> bool:
    """Whether ``text`` is an image id: ASCII digits only (``٥`` and ``５`` are file names)."""
    return text.isascii() and text.isdigit()


def resolve_query(conn: Connection, query, spec: ModelSpec, method: Method, collection: int,
                  embedder=None) -> Query:
    """An image id of the collection, a stored file or a new file -> the query's vectors (and
    local features)."""
    settings = get_settings()
    path = Path(str(query))
    if isinstance(query, (int, np.integer)) or (is_id(str(query)) and not path.exists()):
        if not image_in_collection(conn, collection, int(query)):
            raise QueryError(f"image id {query} is not stored in this collection")
        found = stored_query(conn, int(query), spec, method)
        if found is None:
            raise QueryError(f"image id {query} has no {spec.name}/{method.stored} embedding"
                             f"{' or ' + method.local.name + ' features' if method.local else ''} stored")
        return found
    if not path.is_file():
        raise QueryError(f"{query}: no such file and not an image id")
    data = read_bytes(path, settings.max_file_bytes)
    digest = sha256(data)
    image_id = image_ids_by_sha(conn, collection, [digest]).get(digest)
    if image_id is not None and (found := stored_query(conn, image_id, spec, method)):
        return found
    embedder = embedder or cached_embedder(spec.name, method.name)
    image = load_image(path, settings.max_pixels, settings.max_file_bytes,
                       min_side=method.min_side(spec), longest=method.longest_side())
    with ThreadPoolExecutor(1) as beside:  # SIFT holds no lock of Python's: it runs beside the network
        local = beside.submit(extract, image, method.local) if method.local else None
        described = embedder.describe([method.prepare(image, spec)], turns=method.turns)[0]
        vectors, turned = split_turned(whiten_query(conn, collection, spec, method, described), method)
        return Query(vectors, None if local is None else local.result(), image_id, turned)
