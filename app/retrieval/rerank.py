"""The second stage: spatial verification of the shortlist, background weighting, expansion
through the match graph, and fusion with the first stage's similarity.

Rules (fixed defaults; ``app.describe.local`` has the verification's own):
- a candidate with at least ``MIN_INLIERS`` inliers is verified; verified candidates rank above
  all others, weak ones keep their first-stage order after them;
- each inlier counts 1/n, n = verified candidates with an inlier within ``BURST_RADIUS`` of it
  in the query (a shared background counts little, the item itself fully);
- through the graph, image d gains max over verified r of (score(r) / best)^GRAPH_POWER x graph(r, d);
  without a graph, the best verified match's own shortlist is verified once (one expansion);
- every verified score gains FUSION_WEIGHT x (1 - first-stage distance).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sqlalchemy import Connection

from app.describe.local import BURST_RADIUS, MIN_INLIERS, Prepared, verify
from app.describe.methods import SHORTLIST, Method
from app.describe.registry import ModelSpec
from app.retrieval.hits import Hit
from app.retrieval.query import Query, stored_query
from app.retrieval.shortlist import first_stage
from app.store.graph import load_graph
from app.store.knn import distances
from app.store.local import load_local
from app.store.scope import Scope

GRAPH_POWER = 2.0  # a path through candidate r is weighted (score(r) / best score)^GRAPH_POWER
FUSION_WEIGHT = float(MIN_INLIERS)  # a verified candidate's score += this x (1 - first-stage distance)


def background_weights(points: np.ndarray, inliers: dict[int, np.ndarray]) -> dict[int, float]:
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


def verified_scores(points: np.ndarray, inliers: dict[int, np.ndarray]) -> dict[int, float]:
    """Background-weighted scores of the verified candidates: those with at least MIN_INLIERS
    inliers (fewer are weak: counted, never scored)."""
    return background_weights(points, {i: kp for i, kp in inliers.items() if len(kp) >= MIN_INLIERS})


class Verifier:
    """Spatial verification of candidates against one query, remembering every result."""

    def __init__(self, conn: Connection, method: Method, query: Query):
        self.conn, self.method, self.query = conn, method, query
        self.q = Prepared(query.local, method.local)
        self.inliers: dict[int, np.ndarray] = {}

    def check(self, ids: list[int]) -> None:
        todo = [i for i in ids if i not in self.inliers and i != self.query.image_id]
        for image_id, features in load_local(self.conn, self.method.local.name, todo).items():
            self.inliers[image_id] = verify(self.q, Prepared(features, self.method.local))

    def scores(self) -> dict[int, float]:
        return verified_scores(self.q.points, self.inliers)


def direct_scores(conn: Connection, spec: ModelSpec, method: Method, query: Query, scope: Scope) -> dict[int, float]:
    """Verified neighbours of a query in its shortlist, with their scores (a match graph row)."""
    verifier = Verifier(conn, method, query)
    verifier.check([h.image_id for h in first_stage(conn, spec, method, query.vectors, SHORTLIST, scope)])
    return verifier.scores()


def through_graph(score: dict[int, float], graph: dict[int, dict[int, float]], query_id: int | None,
                  allowed: Callable[[int], bool] = lambda image_id: True) -> dict[int, float]:
    """Graph query expansion: each image gains its best path through one verified candidate,
    max over r of (score(r) / best score)^2 x graph(r, d). The max (not a sum) keeps a big
    cluster of look-alikes that share a layout or a background from outvoting the item's own
    photos; the square keeps a weakly matched look-alike from lending its own cluster much."""
    top = max(score.values())
    extra: dict[int, float] = {}
    for r, s in score.items():
        for d, g in graph.get(r, {}).items():
            if d != query_id and allowed(d):
                extra[d] = max(extra.get(d, 0.0), (s / top) ** GRAPH_POWER * g)
    return {d: score.get(d, 0.0) + extra.get(d, 0.0) for d in {*score, *extra}}


def fuse(score: dict[int, float], known: dict[int, Hit]) -> dict[int, float]:
    """The first-stage similarity counts up to FUSION_WEIGHT weighted inliers."""
    return {i: s + FUSION_WEIGHT * (1.0 - known[i].distance) for i, s in score.items()}


def order(hits: list[Hit], score: dict[int, float], known: dict[int, Hit], inliers: dict[int, np.ndarray],
          query_id: int | None) -> list[Hit]:
    """The query itself first (when stored), then verified by score, then the rest in first-stage order."""
    def tagged(h: Hit) -> Hit:
        found = inliers.get(h.image_id)
        return replace(h, inliers=None if found is None else len(found), score=score.get(h.image_id))

    itself = [h for h in hits if h.image_id == query_id]
    good = [tagged(known[i]) for i in sorted(score, key=lambda i: -score[i])]
    rest = [tagged(h) for h in hits if h.image_id not in score and h.image_id != query_id]
    return itself + good + rest


def rerank(conn: Connection, spec: ModelSpec, method: Method, query: Query, hits: list[Hit],
           scope: Scope) -> list[Hit]:
    """Re-rank the shortlist by spatial verification, the match graph and fusion (module rules)."""
    verifier = Verifier(conn, method, query)
    verifier.check([h.image_id for h in hits[:SHORTLIST]])
    score = verifier.scores()
    known = {h.image_id: h for h in hits}
    graph = load_graph(conn, spec.name, method.local.name, list(score)) if score else {}
    if graph:
        score = through_graph(score, graph, query.image_id, scope.allows)
        reached = [i for i in score if i not in known]  # those outside the scope's filters drop out here
        near = distances(conn, spec, method.stored, query.vectors[0], reached, scope)
        known.update({i: Hit.of(r) for i, r in near.items()})
        score = {i: s for i, s in score.items() if i in known}
    elif score:  # no graph: expand once with the best verified match's own neighbours
        expanded = stored_query(conn, max(score, key=score.get), spec, method)
        if expanded is not None:
            more = [h for h in first_stage(conn, spec, method, expanded.vectors, SHORTLIST, scope)
                    if h.image_id not in known]
            verifier.check([h.image_id for h in more])
            known.update({h.image_id: h for h in more})
            score = verifier.scores()
    return order(hits, fuse(score, known), known, verifier.inliers, query.image_id)
