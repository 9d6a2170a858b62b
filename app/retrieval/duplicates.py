"""Near-duplicate groups: pairs of a collection's images closer than a cosine-distance threshold
(found in SQL through the HNSW index), optionally confirmed by spatial verification,
joined into groups (connected components); and exact copies (one content, several files)."""
from __future__ import annotations

from sqlalchemy import Engine

from app.describe.local import MIN_INLIERS, verify
from app.describe.matching import Prepared
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.retrieval.shortlist import warn_if_unindexed
from app.store.files import exact_copies, file_info
from app.store.knn import close_pairs
from app.store.local import load_local

NEIGHBOURS = 20  # candidates per image


def candidate_pairs(engine: Engine, collection: int, spec: ModelSpec, method: Method,
                    threshold: float) -> list[tuple[int, int, float]]:
    with engine.begin() as conn:
        warn_if_unindexed(conn, spec, method)
        return close_pairs(conn, spec, method.stored, threshold, NEIGHBOURS, collection)


def verified_pairs(engine: Engine, method: Method, pairs: list[tuple[int, int, float]]):
    ids = sorted({i for x, y, _ in pairs for i in (x, y)})
    with engine.connect() as conn:
        features = load_local(conn, method.local.name, ids)
    prepared = {i: Prepared(f, method.local) for i, f in features.items()}
    out = []
    for x, y, d in pairs:
        if x in prepared and y in prepared and len(verify(prepared[x], prepared[y])[0]) >= MIN_INLIERS:
            out.append((x, y, d))
    return out


def groups(pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for x, y, _ in pairs:
        parent[find(x)] = find(y)
    members: dict[int, list[int]] = {}
    for i in list(parent):
        members.setdefault(find(i), []).append(i)
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))


def find_duplicates(engine: Engine, collection: int, spec: ModelSpec, method: Method,
                    threshold: float) -> list[list[dict]]:
    """Groups of near-duplicate images of the collection, largest first: {id, path, paths, label} each."""
    pairs = candidate_pairs(engine, collection, spec, method, threshold)
    if method.local:
        pairs = verified_pairs(engine, method, pairs)
    found = groups(pairs)
    with engine.connect() as conn:
        info = file_info(conn, [i for g in found for i in g])
    return [[{"id": i, "path": info[i][0][0], "paths": info[i][0], "label": info[i][1]} for i in g if i in info]
            for g in found]


def find_exact_copies(engine: Engine, collection: int) -> list[list[dict]]:
    """Files with the same content (one image, several paths): [{id, path, label}] per image."""
    with engine.connect() as conn:
        return exact_copies(conn, collection)
