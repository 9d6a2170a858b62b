"""Cosine-distance search in the database: ``ORDER BY embedding <=> :q LIMIT k`` over the HNSW index."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, text

from app import store
from app.config import get_settings
from app.images import load_image, read_bytes, sha256
from app.methods import DEFAULT_METHOD, Method, get_method
from app.registry import ModelSpec, get_model
from app.schema import query_cast, vector_expr


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Hit:
    image_id: int
    path: str
    distance: float
    label: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def knn_sql(spec: ModelSpec, method: Method, restricted: bool = False) -> str:
    """The search as plain SQL (also what the README shows for psql users).

    ``restricted`` adds a filter to the image ids in ``:among`` (evaluation protocols).
    """
    expr = vector_expr("e.embedding", spec.dim)
    cast = query_cast(spec.dim)
    among = " AND e.image_id = ANY(:among)" if restricted else ""
    return (f"SELECT i.id, i.path, i.label, {expr} <=> CAST(:q AS {cast}) AS distance "
            f"FROM {spec.table} e JOIN images i ON i.id = e.image_id "
            f"WHERE e.method = '{method.name}'{among} "
            f"ORDER BY {expr} <=> CAST(:q AS {cast}) LIMIT :k")


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.8g}" for v in np.asarray(vector, dtype=np.float32)) + "]"


def nearest(conn: Connection, spec: ModelSpec, method: Method, vector: np.ndarray, k: int,
            among: list[int] | None = None) -> list[Hit]:
    """The k nearest stored images; ``among`` restricts the candidates (an iterative index scan)."""
    conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, min(int(k), 1000))}"))
    params = {"q": vector_literal(vector), "k": int(k)}
    if among is not None:
        conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
        conn.execute(text("SET LOCAL hnsw.max_scan_tuples = 1000000"))
        params["among"] = list(among)
    rows = conn.execute(text(knn_sql(spec, method, among is not None)), params)
    return [Hit(r.id, r.path, float(r.distance), r.label) for r in rows]


@lru_cache(maxsize=4)
def _embedder(model: str, method: str):
    from app.embedder import Embedder

    return Embedder(get_model(model), get_method(method))


def query_vector(conn: Connection, query, spec: ModelSpec, method: Method, embedder=None) -> tuple[np.ndarray, int | None]:
    """Resolve an image id, a stored file or a new file to (vector, stored id or None)."""
    if isinstance(query, np.ndarray):
        return query, None
    settings = get_settings()
    path = Path(str(query))
    if isinstance(query, int) or (str(query).isdigit() and not path.exists()):
        image_id = int(query)
        ids, vectors = store.stored_vectors(conn, spec, method, [image_id])
        if not ids:
            raise QueryError(f"image id {image_id} has no {spec.name}/{method.name} embedding stored")
        return vectors[0], image_id
    if not path.is_file():
        raise QueryError(f"{query}: no such file and not an image id")
    data = read_bytes(path, settings.max_file_bytes)
    image_id = store.image_ids_by_sha(conn, [sha256(data)]).get(sha256(data))
    if image_id is not None:
        ids, vectors = store.stored_vectors(conn, spec, method, [image_id])
        if ids:
            return vectors[0], image_id
    embedder = embedder or _embedder(spec.name, method.name)
    image = load_image(path, settings.max_pixels, settings.max_file_bytes,
                       min_side=method.input_side(spec))
    return embedder.embed(method.prepare(image, spec)[None])[0], image_id


def similar(query, model: str, k: int = 10, method: str = DEFAULT_METHOD,
            engine: Engine | None = None, embedder=None) -> list[Hit]:
    """The ``k`` stored images nearest to ``query`` (an image id, a file path or a vector)."""
    from app.db import get_engine

    spec, meth = get_model(model), get_method(method)
    if k < 1:
        raise QueryError("k must be at least 1")
    with (engine or get_engine()).begin() as conn:
        vector, _ = query_vector(conn, query, spec, meth, embedder)
        return nearest(conn, spec, meth, vector, k)
