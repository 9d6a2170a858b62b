"""Search in the database: ``ORDER BY embedding <=> :q LIMIT k`` over the HNSW index, then the
method's optional steps (region aggregation, query expansion, spatial verification)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, text

from app import store
from app.config import get_settings
from app.embedder import l2_normalize
from app.images import load_image, read_bytes, sha256
from app.local import BURST_RADIUS, MIN_INLIERS, LocalFeatures, Prepared, extract, verify

GRAPH_POWER = 2.0  # a path through candidate r is weighted (score(r) / best score)^GRAPH_POWER
FUSION_WEIGHT = float(MIN_INLIERS)  # a verified candidate's score += this x (1 - first-stage distance)
from app.methods import DEFAULT_METHOD, QE_ALPHA, QE_TOP, SHORTLIST, Method, get_method
from app.registry import ModelSpec, get_model
from app.schema import query_cast, vector_expr


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Hit:
    image_id: int
    path: str
    distance: float  # cosine distance of the first stage (whole-image vectors)
    label: str | None
    inliers: int | None = None  # verified local matches, when the method verified this candidate
    score: float | None = None  # re-ranking score (background-weighted inliers, graph-expanded)


@dataclass
class Query:
    vectors: np.ndarray  # (R, dim) in the searched space; row 0 = whole image
    local: LocalFeatures | None = None
    image_id: int | None = None


def knn_sql(spec: ModelSpec, stored: str, restricted: bool = False) -> str:
    """The search as plain SQL (also what the README shows for psql users).

    ``restricted`` adds a filter to the image ids in ``:among`` (evaluation protocols).
    """
    expr = vector_expr("e.embedding", spec.dim)
    cast = query_cast(spec.dim)
    among = " AND e.image_id = ANY(:among)" if restricted else ""
    return (f"SELECT i.id, i.path, i.label, {expr} <=> CAST(:q AS {cast}) AS distance "
            f"FROM {spec.table} e JOIN images i ON i.id = e.image_id "
            f"WHERE e.method = '{stored}'{among} "
            f"ORDER BY {expr} <=> CAST(:q AS {cast}) LIMIT :k")


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.8g}" for v in np.asarray(vector, dtype=np.float32)) + "]"


def nearest(conn: Connection, spec: ModelSpec, stored: str, vector: np.ndarray, k: int,
            among: list[int] | None = None) -> list[Hit]:
    """The k nearest stored rows; ``among`` restricts the candidates (an iterative index scan)."""
    conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, min(int(k), 1000))}"))
    params = {"q": vector_literal(vector), "k": int(k)}
    if among is not None:
        conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
        conn.execute(text("SET LOCAL hnsw.max_scan_tuples = 1000000"))
        params["among"] = list(among)
    rows = conn.execute(text(knn_sql(spec, stored, among is not None)), params)
    return [Hit(r.id, r.path, float(r.distance), r.label) for r in rows]


# ---- the query ----------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _embedder(model: str, method: str):
    from app.embedder import Embedder

    return Embedder(get_model(model), get_method(method))


def _whiten(conn: Connection, spec: ModelSpec, method: Method, vectors: np.ndarray) -> np.ndarray:
    if not method.whiten:
        return vectors
    from app.whiten import apply

    fitted = store.load_whitening(conn, spec.name, method.raw)
    if fitted is None:
        raise QueryError(f"no whitening fitted for {spec.name}/{method.raw}: run "
                         f"`imgsim index whiten --model {spec.name} --method {method.raw}`")
    return apply(vectors, fitted[1], fitted[2])


def stored_query(conn: Connection, image_id: int, spec: ModelSpec, method: Method) -> Query | None:
    ids, vectors = store.stored_vectors(conn, spec, method.stored, [image_id], regions=method.descriptor.regions)
    if not ids:
        return None
    local = None
    if method.local:
        local = store.load_local(conn, method.local.name, [image_id]).get(image_id)
        if local is None:
            return None
    return Query(vectors, local, image_id)


def resolve_query(conn: Connection, query, spec: ModelSpec, method: Method, embedder=None) -> Query:
    """An image id, a stored file or a new file -> the query's vectors (and local features)."""
    settings = get_settings()
    path = Path(str(query))
    if isinstance(query, (int, np.integer)) or (str(query).isdigit() and not path.exists()):
        found = stored_query(conn, int(query), spec, method)
        if found is None:
            raise QueryError(f"image id {query} has no {spec.name}/{method.stored} embedding"
                             f"{' or ' + method.local.name + ' features' if method.local else ''} stored")
        return found
    if not path.is_file():
        raise QueryError(f"{query}: no such file and not an image id")
    data = read_bytes(path, settings.max_file_bytes)
    image_id = store.image_ids_by_sha(conn, [sha256(data)]).get(sha256(data))
    if image_id is not None and (found := stored_query(conn, image_id, spec, method)):
        return found
    embedder = embedder or _embedder(spec.name, method.name)
    image = load_image(path, settings.max_pixels, settings.max_file_bytes,
                       min_side=method.min_side(spec), longest=method.longest_side())
    vectors = _whiten(conn, spec, method, embedder.describe([method.prepare(image, spec)])[0])
    local = extract(image, method.local) if method.local else None
    return Query(vectors, local, image_id)


# ---- ranking ------------------------------------------------------------------------------------
def _first_stage(conn, spec, method: Method, vectors: np.ndarray, n: int, among) -> list[Hit]:
    if not method.descriptor.regions:
        return nearest(conn, spec, method.stored, vectors[0], n, among)
    # Regions: each query region votes for images with its best-matching region.
    per_region = max(4 * n, 200)
    best: dict[int, float] = {}
    info: dict[int, Hit] = {}
    for vector in vectors:
        seen: dict[int, float] = {}
        for hit in nearest(conn, spec, method.stored, vector, per_region, among):
            seen[hit.image_id] = max(seen.get(hit.image_id, -1.0), 1.0 - hit.distance)
            info.setdefault(hit.image_id, hit)
        for image_id, sim in seen.items():
            best[image_id] = best.get(image_id, 0.0) + sim
    ranked = sorted(best, key=lambda i: -best[i])[:n]
    return [Hit(i, info[i].path, 1.0 - best[i] / len(vectors), info[i].label) for i in ranked]


def expand_vector(conn, spec: ModelSpec, stored: str, vector: np.ndarray, hits: list[Hit],
                  alpha: float = QE_ALPHA) -> np.ndarray:
    """``vector`` plus each hit's stored vector weighted by max(0, similarity)^alpha, L2-normalised
    (alpha-QE for a query, DBA for a stored image)."""
    ids, vectors = store.stored_vectors(conn, spec, stored, [h.image_id for h in hits])
    by_id = dict(zip(ids, vectors))
    out = np.asarray(vector, np.float32).copy()
    for h in hits:
        out += max(0.0, 1.0 - h.distance) ** alpha * by_id[h.image_id]
    return l2_normalize(out)[0]


def _expand(conn, spec, method: Method, query: np.ndarray, hits: list[Hit]) -> np.ndarray:
    top = [h for h in hits if h.distance > 1e-6][:QE_TOP]
    if not top:
        return query
    out = query.copy()
    out[0] = expand_vector(conn, spec, method.stored, query[0], top)
    return out


def _background_weights(points: np.ndarray, inliers: dict[int, np.ndarray]) -> dict[int, float]:
    """Score each verified candidate by its inliers (indices into the query's ``points``), each
    weighted 1 / (number of verified candidates with an inlier within ``BURST_RADIUS`` of it in
    the query): a part of the query that matches many different images (a shared background,
    a textbook under every item) counts little, the item itself counts fully."""
    if not inliers:
        return {}
    ids = list(inliers)
    used = np.unique(np.concatenate([inliers[i] for i in ids]))  # query keypoints that are inliers
    members = np.zeros((len(used), len(ids)), np.float32)
    for j, i in enumerate(ids):
        members[np.searchsorted(used, inliers[i]), j] = 1.0
    xy = points[used]
    near = (((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1) <= BURST_RADIUS ** 2).astype(np.float32)
    weights = 1.0 / np.maximum(((near @ members) > 0).sum(axis=1), 1)
    return {i: float(weights[np.searchsorted(used, inliers[i])].sum()) for i in ids}


class _Verifier:
    """Spatial verification of candidates against one query, remembering every result."""

    def __init__(self, conn: Connection, method: Method, query: Query):
        self.conn, self.method, self.query = conn, method, query
        self.q = Prepared(query.local, method.local)
        self.inliers: dict[int, np.ndarray] = {}

    def check(self, ids: list[int]) -> None:
        todo = [i for i in ids if i not in self.inliers and i != self.query.image_id]
        for image_id, features in store.load_local(self.conn, self.method.local.name, todo).items():
            self.inliers[image_id] = verify(self.q, Prepared(features, self.method.local))

    def scores(self) -> dict[int, float]:
        """Background-weighted scores of the verified candidates (>= MIN_INLIERS inliers)."""
        verified = {i: kp for i, kp in self.inliers.items() if len(kp) >= MIN_INLIERS}
        return _background_weights(self.q.points, verified)


def direct_scores(conn: Connection, spec: ModelSpec, method: Method, query: Query,
                  among: list[int] | None = None) -> dict[int, float]:
    """Verified neighbours of a query in its shortlist, with their scores (a match graph row)."""
    verifier = _Verifier(conn, method, query)
    verifier.check([h.image_id for h in _first_stage(conn, spec, method, query.vectors, SHORTLIST, among)])
    return verifier.scores()


def _through_graph(score: dict[int, float], graph: dict[int, dict[int, float]], query_id: int | None,
                   among: list[int] | None) -> dict[int, float]:
    """Graph query expansion: each image gains its best path through one verified candidate,
    max over r of (score(r) / best score)^2 x graph(r, d). The max (not a sum) keeps a big
    cluster of look-alikes that share a layout or a background from outvoting the item's own
    photos; the square keeps a weakly matched look-alike from lending its own cluster much."""
    allowed = set(among) if among is not None else None
    top = max(score.values())
    extra: dict[int, float] = {}
    for r, s in score.items():
        for d, g in graph.get(r, {}).items():
            if d != query_id and (allowed is None or d in allowed):
                extra[d] = max(extra.get(d, 0.0), (s / top) ** GRAPH_POWER * g)
    return {d: score.get(d, 0.0) + extra.get(d, 0.0) for d in {*score, *extra}}


def _distances(conn, spec: ModelSpec, method: Method, query: np.ndarray, ids: list[int]) -> dict[int, Hit]:
    """First-stage hits for images reached only through the graph (whole-image distance)."""
    if not ids:
        return {}
    expr, cast = vector_expr("e.embedding", spec.dim), query_cast(spec.dim)
    rows = conn.execute(text(
        f"SELECT i.id, i.path, i.label, {expr} <=> CAST(:q AS {cast}) AS distance "
        f"FROM {spec.table} e JOIN images i ON i.id = e.image_id "
        f"WHERE e.method = '{method.stored}' AND e.region = 0 AND e.image_id = ANY(:ids)"),
        {"q": vector_literal(query), "ids": [int(i) for i in ids]})
    return {r.id: Hit(r.id, r.path, float(r.distance), r.label) for r in rows}


def _verify(conn, spec: ModelSpec, method: Method, query: Query, hits: list[Hit],
            among: list[int] | None) -> list[Hit]:
    """Re-rank the shortlist by spatial verification.

    Verified candidates (>= MIN_INLIERS inliers) come first, ordered by background-weighted
    inliers, expanded through the stored match graph (``imgsim index graph``) where it exists,
    else by one query expansion with the best verified match, plus FUSION_WEIGHT x the
    first-stage similarity; weak ones keep their first-stage order after them.
    """
    verifier = _Verifier(conn, method, query)
    verifier.check([h.image_id for h in hits[:SHORTLIST]])
    score = verifier.scores()
    known = {h.image_id: h for h in hits}
    graph = store.load_graph(conn, spec.name, method.local.name, list(score)) if score else {}
    if graph:
        score = _through_graph(score, graph, query.image_id, among)
        known.update(_distances(conn, spec, method, query.vectors[0], [i for i in score if i not in known]))
        score = {i: s for i, s in score.items() if i in known}
    elif score:  # no graph: expand once with the best verified match's own neighbours
        expanded = stored_query(conn, max(score, key=score.get), spec, method)
        if expanded is not None:
            more = [h for h in _first_stage(conn, spec, method, expanded.vectors, SHORTLIST, among)
                    if h.image_id not in known]
            verifier.check([h.image_id for h in more])
            known.update({h.image_id: h for h in more})
            score = verifier.scores()

    # fuse with the first stage: the global similarity counts up to FUSION_WEIGHT weighted inliers
    score = {i: s + FUSION_WEIGHT * (1.0 - known[i].distance) for i, s in score.items()}

    def tagged(h: Hit) -> Hit:
        found = verifier.inliers.get(h.image_id)
        return replace(h, inliers=None if found is None else len(found), score=score.get(h.image_id))

    itself = [h for h in hits if h.image_id == query.image_id]
    good = [tagged(known[i]) for i in sorted(score, key=lambda i: -score[i])]
    rest = [tagged(h) for h in hits if h.image_id not in score and h.image_id != query.image_id]
    return itself + good + rest


def rank(conn: Connection, spec: ModelSpec, method: Method, query: Query, k: int,
         among: list[int] | None = None) -> list[Hit]:
    n = max(k, SHORTLIST if method.local else k, QE_TOP + 2 if method.qe else k)
    vectors = query.vectors
    hits = _first_stage(conn, spec, method, vectors, n, among)
    if method.qe:
        hits = _first_stage(conn, spec, method, _expand(conn, spec, method, vectors, hits), n, among)
    if method.local and query.local is not None:
        hits = _verify(conn, spec, method, query, hits, among)
    return hits[:k]


def effective_method(conn: Connection, spec: ModelSpec, method: Method) -> Method:
    from app.methods import with_collection

    return with_collection(method, store.has_whitening(conn, spec.name, method.raw))


def similar(query, model: str, k: int = 10, method: str = DEFAULT_METHOD,
            engine: Engine | None = None, embedder=None) -> list[Hit]:
    """The ``k`` stored images nearest to ``query`` (an image id or a file path)."""
    from app.db import get_engine

    spec, meth = get_model(model), get_method(method)
    if k < 1:
        raise QueryError("k must be at least 1")
    with (engine or get_engine()).begin() as conn:
        meth = effective_method(conn, spec, meth)
        return rank(conn, spec, meth, resolve_query(conn, query, spec, meth, embedder), k)
