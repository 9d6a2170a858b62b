"""The second stage: spatial verification of the shortlist, background weighting, expansion
through the match graph, and fusion with the first stage's similarity.

Rules (fixed defaults; ``app.describe.local`` has the verification's own):
- the shortlist is the first stage's top ``SHORTLIST`` and, for each quarter turn of the query,
  its ``TURNED_TOP`` nearest images (``app.retrieval.shortlist.turned_hits``);
- a candidate with at least ``MIN_INLIERS`` inliers is verified; verified candidates rank above
  all others, weak ones keep their first-stage order after them; where none is verified, the
  candidates are matched again at the looser ``RETRY_RATIO`` (``app.describe.local``);
- each inlier counts 1/n, n = verified candidates with an inlier within ``BURST_RADIUS`` of it
  in the query (a shared background counts little, the item itself fully), and a candidate
  scores the cells of ``EVIDENCE_CELL`` px of the query its inliers fall in, each as much as
  its best inlier there (inliers crowded on one patch are one piece of evidence), plus
  ``INLIER_SHARE`` of its inliers, times
  ``EPIPOLAR_WEIGHT`` where a fundamental matrix verified the candidate;
- a stored image's verified neighbours include the images whose match-graph rows list it, and
  every graph edge is read from both sides at the better of its two scores
  (``app.store.graph.both_ways``);
- through the graph, image d gains max over verified r of (score(r) / best)^GRAPH_POWER x graph(r, d);
  without a graph, the best verified match's own shortlist is verified once (one expansion);
- every verified score gains FUSION_WEIGHT x (1 - first-stage distance);
- each verified image carries its same-item confidence (``app.retrieval.confidence``);
- the images no verification reached follow in the first stage's order from the query's vector
  averaged with its verified images' vectors (``verified_tail``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sqlalchemy import Connection

from app.describe.local import BURST_RADIUS, MIN_INLIERS, verify_all
from app.describe.matching import RATIO, Prepared, matches_both_ways
from app.describe.methods import SHORTLIST, Method
from app.describe.registry import ModelSpec
from app.describe.vectors import l2_normalize
from app.retrieval.confidence import better, covered_share, same_item_confidence
from app.retrieval.hits import Hit
from app.retrieval.query import Query, stored_query
from app.retrieval.shared import SharedWork
from app.retrieval.shortlist import first_stage, turned_hits
from app.store.embeddings import summed_vector
from app.store.graph import both_ways, current_row, listed_in, load_graph
from app.store.groups import pair_confidences
from app.store.knn import distances
from app.store.local import load_local
from app.store.scope import Scope

GRAPH_POWER = 2.0  # a path through candidate r is weighted (score(r) / best score)^GRAPH_POWER
FUSION_WEIGHT = float(MIN_INLIERS)  # a verified candidate's score += this x (1 - first-stage distance)
# px: a candidate's inliers in one cell of the query (5% of a 1024 px side) are one piece of
# evidence: the keypoints of a small patch (a logo, a title, a rating box) agree together
EVIDENCE_CELL = BURST_RADIUS / 2
# what each inlier adds beside its cell's count: a cell's further inliers are evidence too,
# though not independent of its first
INLIER_SHARE = 0.1


def background_weights(points: np.ndarray, inliers: dict[int, np.ndarray],
                       counts: dict[int, float] | None = None) -> dict[int, float]:
    """Score each verified candidate by the cells of the query its inliers (indices into the
    query's ``points``) cover, each cell as much as its best inlier there, an inlier weighted
    1 / (number of verified candidates with an inlier within ``BURST_RADIUS`` of it in the
    query): a part of the query that matches many different images (a shared background, a
    textbook under every item) counts little, the item itself counts fully, and a patch dense
    with inliers (a logo that other items share) counts as one part, its further inliers a
    tenth each (``INLIER_SHARE``). ``counts``: what an
    inlier of a candidate counts where not 1 (an epipolar one's, ``EPIPOLAR_WEIGHT``)."""
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
    cells = np.floor(xy / EVIDENCE_CELL).astype(np.int64) @ np.array([1 << 20, 1], np.int64)
    counts = counts or {}
    return {i: counts.get(i, 1.0) * _per_cell(cells[k], weights[k])
            for i in ids for k in [np.searchsorted(used, inliers[i])]}


def _per_cell(cells: np.ndarray, weights: np.ndarray) -> float:
    """The sum over the cells (one id per inlier) of the best weight in each, and
    ``INLIER_SHARE`` of every inlier's weight."""
    order = np.lexsort((-weights, cells))
    first = np.r_[True, cells[order][1:] != cells[order][:-1]]
    return float(weights[order][first].sum()) + INLIER_SHARE * float(weights.sum())


def verified_scores(points: np.ndarray, inliers: dict[int, np.ndarray],
                    counts: dict[int, float] | None = None) -> dict[int, float]:
    """Background-weighted scores of the verified candidates: those with at least MIN_INLIERS
    inliers (fewer are weak: counted, never scored)."""
    return background_weights(points, {i: kp for i, kp in inliers.items() if len(kp) >= MIN_INLIERS}, counts)


class Verifier:
    """Spatial verification of candidates against one query, remembering every result;
    ``shared``: the work of the job this query belongs to."""

    def __init__(self, conn: Connection, method: Method, query: Query, shared: SharedWork | None = None):
        self.conn, self.method, self.query, self.shared = conn, method, query, shared
        self.q = Prepared(query.local, method.local)
        self.inliers: dict[int, np.ndarray] = {}
        self.counts: dict[int, float] = {}  # what an inlier counts, where not 1 (an epipolar one)
        self.second_look: set[int] = set()  # matched at the looser ratio, since none verified at RATIO

    def check(self, ids: list[int]) -> None:
        todo = [i for i in ids if i not in self.inliers and i != self.query.image_id]
        if not todo:  # all verified already: no read of local features
            return
        kind = self.method.local
        prepared = self.shared.load(self.conn, kind, todo) if self.shared else {
            image_id: Prepared(features, kind) for image_id, features in load_local(self.conn, kind.name, todo).items()}
        found, ratio = verify_all(self.q, prepared, self._matches)
        for image_id, (inliers, count) in found.items():
            self.inliers[image_id] = inliers
            if count != 1.0:
                self.counts[image_id] = count
            if ratio != RATIO:
                self.second_look.add(image_id)

    def _matches(self, image_id: int, d: Prepared) -> tuple[np.ndarray, np.ndarray] | None:
        """The pair's tentative matches when the job has them (keeping the reverse ones for a
        later query), else None (``verify`` computes them)."""
        me = self.query.image_id
        if self.shared is None or me is None:
            return None
        known = self.shared.take(me, image_id)
        if known is not None or not self.shared.wants(image_id):
            return known
        forward, backward = matches_both_ways(self.q, d)
        self.shared.keep(image_id, me, backward)
        return forward

    def scores(self) -> dict[int, float]:
        return verified_scores(self.q.points, self.inliers, self.counts)

    def confidences(self, scores: dict[int, float]) -> dict[int, float]:
        """The same-item confidence of each verified candidate (``scores``: ``self.scores()``)."""
        return {i: same_item_confidence(s, covered_share(self.q.points, self.inliers[i], EVIDENCE_CELL),
                                        i not in self.second_look) for i, s in scores.items()}


def direct_scores(conn: Connection, spec: ModelSpec, method: Method, query: Query, scope: Scope,
                  shared: SharedWork | None = None) -> tuple[dict[int, float], dict[int, float]]:
    """Verified neighbours of a query in its shortlist, with their scores and same-item
    confidences (a match graph row)."""
    verifier = Verifier(conn, method, query, shared)
    verifier.check([h.image_id for h in shortlist(conn, spec, method, query,
                                                  first_stage(conn, spec, method, query.vectors, SHORTLIST, scope),
                                                  scope)])
    scores = verifier.scores()
    return scores, verifier.confidences(scores)


def shortlist(conn: Connection, spec: ModelSpec, method: Method, query: Query, hits: list[Hit],
              scope: Scope) -> list[Hit]:
    """What verification checks: the first ``SHORTLIST`` hits and the nearest images of the
    query's quarter turns (``turned_hits``)."""
    return hits[:SHORTLIST] + turned_hits(conn, spec, method, query, hits[:SHORTLIST], scope)


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
    """The first-stage similarity counts up to FUSION_WEIGHT weighted cells of inliers."""
    return {i: s + FUSION_WEIGHT * (1.0 - known[i].distance) for i, s in score.items()}


def order(hits: list[Hit], score: dict[int, float], known: dict[int, Hit], inliers: dict[int, np.ndarray],
          query_id: int | None, tail: list[Hit] | None = None, confidence: dict[int, float] | None = None) -> list[Hit]:
    """The query itself first (when stored), then verified by score, then the rest in the order
    of ``tail`` (default: the first stage's, ``hits``)."""
    def tagged(h: Hit) -> Hit:
        found = inliers.get(h.image_id)
        return replace(h, inliers=None if found is None else len(found), score=score.get(h.image_id),
                       confidence=(confidence or {}).get(h.image_id))

    itself = [replace(h, confidence=1.0) for h in hits if h.image_id == query_id]  # the item itself
    good = [tagged(known[i]) for i in sorted(score, key=lambda i: -score[i])]
    rest = [tagged(h) for h in (hits if tail is None else tail) if h.image_id not in score and h.image_id != query_id]
    return itself + good + rest


def verified_tail(conn: Connection, spec: ModelSpec, method: Method, query: Query, score: dict[int, float],
                  known: dict[int, Hit], n: int, scope: Scope) -> list[Hit]:
    """The first stage's ``n`` nearest again, from the query's vector averaged with those of its
    verified images, each weighing as much as the query (average query expansion over
    spatially verified results): they show the item, so their mean describes it better than
    the query alone, and the images no verification reached are ordered by it. Each hit keeps
    its distance to the query."""
    vectors = query.vectors.copy()
    vectors[0] = l2_normalize(query.vectors[0] + summed_vector(conn, spec, method.stored, list(score)))[0]
    again = first_stage(conn, spec, method, vectors, n, scope)
    known = with_distances(conn, spec, method, query, known, [h.image_id for h in again], scope)
    return [known[h.image_id] for h in again if h.image_id in known]


def with_distances(conn: Connection, spec: ModelSpec, method: Method, query: Query, known: dict[int, Hit],
                   ids: list[int], scope: Scope) -> dict[int, Hit]:
    """``known`` and the hits of those ``ids`` it lacks, at their first-stage distances to the
    query (images outside ``scope``'s filters are left out)."""
    near = distances(conn, spec, method.stored, query.vectors[0], [i for i in ids if i not in known], scope)
    return {**known, **{i: Hit.of(r) for i, r in near.items()}}


def own_row(conn: Connection, spec: ModelSpec, method: Method, query: Query, scope: Scope) -> dict[int, float] | None:
    """A stored image's match-graph row where it is what verifying the image's shortlist now
    gives: a search of its whole collection (no filters) with the row's first stage (no query
    expansion), the row built from the method's vectors after their whitening was fitted."""
    if query.image_id is None or scope.filtered or method.qe:
        return None
    return current_row(conn, spec.name, method.local.name, query.image_id, method.stored, scope.collection,
                       method.raw if method.whiten else None)


def rerank(conn: Connection, spec: ModelSpec, method: Method, query: Query, hits: list[Hit],
           scope: Scope, shown: int = SHORTLIST, from_row: bool = True) -> list[Hit]:
    """Re-rank the shortlist by spatial verification, the match graph and fusion (module rules).
    A stored image with a current row of its own (``own_row``) takes its verified neighbours
    from it (and from the rows that list it) and verifies only those of them among the ``shown``
    best again, for their inliers."""
    verifier = Verifier(conn, method, query)
    row = own_row(conn, spec, method, query, scope) if from_row else None
    known = {h.image_id: h for h in hits}
    if row is None:
        checked = shortlist(conn, spec, method, query, hits, scope)
        verifier.check([h.image_id for h in checked])
        known.update({h.image_id: h for h in checked})
    score = verifier.scores() if row is None else row
    if query.image_id is not None:  # the pairs the other images verified with it, as their rows hold them
        listed = listed_in(conn, spec.name, method.local.name, [query.image_id]).get(query.image_id, {})
        score = both_ways(score, {i: s for i, s in listed.items() if scope.allows(i)})
    direct = set(score)
    graph = load_graph(conn, spec.name, method.local.name, list(score)) if score else {}
    if graph:
        score = through_graph(score, graph, query.image_id, scope.allows)
        known = with_distances(conn, spec, method, query, known, list(score), scope)
        score = {i: s for i, s in score.items() if i in known}  # those outside the scope's filters drop out
    elif score:  # no graph: expand once with the best verified match's own neighbours
        if row is not None:  # the row's neighbours have none either: verify as without one
            return rerank(conn, spec, method, query, hits, scope, shown, from_row=False)
        expanded = stored_query(conn, max(score, key=score.get), spec, method)
        if expanded is not None:
            more = [h for h in first_stage(conn, spec, method, expanded.vectors, SHORTLIST, scope)
                    if h.image_id not in known]
            verifier.check([h.image_id for h in more])
            known.update({h.image_id: h for h in more})
            score = verifier.scores()
    confidence = hit_confidences(conn, spec, method, query, verifier.confidences(verifier.scores()) if row is None
                                 else {}, score)
    score = fuse(score, known)
    verifier.check([i for i in sorted(score, key=lambda i: -score[i])[:shown] if i in direct])  # for their inliers
    # the verified fill what is shown: their tail is not searched for
    tail = verified_tail(conn, spec, method, query, score, known, len(hits), scope) if 0 < len(score) < shown else None
    return order(hits, score, known, verifier.inliers, query.image_id, tail, confidence)


def hit_confidences(conn: Connection, spec: ModelSpec, method: Method, query: Query, confidence: dict[int, float],
                    score: dict[int, float]) -> dict[int, float]:
    """Each verified image's same-item confidence with the query: this verification's
    (``confidence``) and, for a stored query, the match graph's stored edge at its better side.
    An image reached only through the graph has none."""
    if query.image_id is not None and score:
        stored = pair_confidences(conn, spec.name, method.local.name, query.image_id, list(score))
        confidence = better(confidence, stored)
    return confidence
