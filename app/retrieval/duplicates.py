"""Near-duplicate groups: pairs of stored images closer than a cosine-distance threshold
(found in SQL through the HNSW index), optionally confirmed by spatial verification,
joined into groups (connected components)."""
from __future__ import annotations

from sqlalchemy import Engine

from app.describe.local import MIN_INLIERS, Prepared, verify
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.retrieval.shortlist import warn_if_unindexed
from app.store.images import image_rows
from app.store.knn import close_pairs
from app.store.local import load_local

NEIGHBOURS = 20  # candidates per image


def candidate_pairs(engine: Engine, spec: ModelSpec, method: Method, threshold: float) -> list[tuple[int, int, float]]:
    with engine.begin() as conn:
        warn_if_unindexed(conn, spec, method)
        return close_pairs(conn, spec, method.stored, threshold, NEIGHBOURS)


def verified_pairs(engine: Engine, method: Method, pairs: list[tuple[int, int, float]]):
    ids = sorted({i for x, y, _ in pairs for i in (x, y)})
    with engine.connect() as conn:
        features = load_local(conn, method.local.name, ids)
    prepared = {i: Prepared(f, method.local) for i, f in features.items()}
    out = []
    for x, y, d in pairs:
        if x in prepared and y in prepared and len(verify(prepared[x], prepared[y])) >= MIN_INLIERS:
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


def find_duplicates(engine: Engine, spec: ModelSpec, method: Method, threshold: float) -> list[list[dict]]:
    pairs = candidate_pairs(engine, spec, method, threshold)
    if method.local:
        pairs = verified_pairs(engine, method, pairs)
    found = groups(pairs)
    ids = [i for g in found for i in g]
    with engine.connect() as conn:
        info = image_rows(conn, ids)
    return [[info[i] for i in g] for g in found]
