"""Near-duplicate groups: pairs of stored images closer than a cosine-distance threshold
(found in SQL through the HNSW index), optionally confirmed by spatial verification,
joined into groups (connected components)."""
from __future__ import annotations

from sqlalchemy import Engine, text

from app import store
from app.local import MIN_INLIERS, Prepared, verify
from app.methods import Method
from app.registry import ModelSpec
from app.schema import vector_expr

NEIGHBOURS = 20  # candidates per image


def candidate_pairs(engine: Engine, spec: ModelSpec, method: Method, threshold: float) -> list[tuple[int, int, float]]:
    a, b = vector_expr("a.embedding", spec.dim), vector_expr("b.embedding", spec.dim)
    sql = text(f"""
        SELECT a.image_id AS x, n.image_id AS y, n.distance
        FROM {spec.table} a
        CROSS JOIN LATERAL (
            SELECT b.image_id, {b} <=> {a} AS distance FROM {spec.table} b
            WHERE b.method = '{method.stored}' AND b.region = 0
            ORDER BY {b} <=> {a} LIMIT {NEIGHBOURS}) n
        WHERE a.method = '{method.stored}' AND a.region = 0 AND a.image_id < n.image_id AND n.distance <= :t
        ORDER BY n.distance""")
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, NEIGHBOURS)}"))
        return [(r.x, r.y, float(r.distance)) for r in conn.execute(sql, {"t": threshold})]


def verified_pairs(engine: Engine, method: Method, pairs: list[tuple[int, int, float]]):
    ids = sorted({i for x, y, _ in pairs for i in (x, y)})
    with engine.connect() as conn:
        features = store.load_local(conn, method.local.name, ids)
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
        info = {r.id: {"id": r.id, "path": r.path, "label": r.label}
                for r in conn.execute(text("SELECT id, path, label FROM images WHERE id = ANY(:ids)"), {"ids": ids})}
    return [[info[i] for i in g] for g in found]
