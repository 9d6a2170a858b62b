"""How likely two photos show the same item, from the evidence a verification gives (pure functions).

A query's verified candidates each have a background-weighted score (``app.retrieval.rerank``:
cells of the query their inliers cover, weighted against what many candidates share). Three
things tell the same item from a look-alike that shares a layout or a background:
- the score itself: a match on the item spreads over many cells;
- the score relative to the query's best verified candidate: a look-alike that shares a
  calendar's grid or a desk's books verifies too, but covers a fraction of what the item's own
  photos cover (January's photos score 3.4-6.2 against each other, February's 0.6-1.3);
- the share of the query's frame its inliers cover (cells with an inlier over the cells the
  query's keypoints span): the score counts cells of a fixed size, so a small photo (325 px,
  about 35 cells) can cover only a few, and the share says what they are of the whole.

The confidence of candidate d for query q is a logistic function of the three:
``1 / (1 + exp(-(INTERCEPT + LOG_SCORE x ln(score) + RELATIVE x score / best + SHARE x share)))``;
an edge of the match graph, verified from both sides, takes the better of its two. The
constants were fitted on four labelled sets, each weighing the same, and checked with each set
held out in turn (docs/quality.md: the data and what the confidences meant on held-out sets);
they are plain numbers, not tuned per collection. More evidence for a pair never lowers its
confidence: every weight is positive.
"""
from __future__ import annotations

import math

import numpy as np

INTERCEPT = -3.554
LOG_SCORE = 1.041  # per unit of ln(background-weighted score)
RELATIVE = 3.165  # per unit of score / the query's best verified score
SHARE = 14.189  # per unit of the share of the query's frame covered by inlier cells


def confidence(score: float, best: float, share: float) -> float:
    """The confidence of a verified candidate with ``score`` when the query's best verified
    candidate scores ``best`` and the candidate's inliers cover ``share`` of the query's frame."""
    if score <= 0 or best <= 0:
        return 0.0
    z = INTERCEPT + LOG_SCORE * math.log(score) + RELATIVE * min(1.0, score / best) + SHARE * min(1.0, share)
    return 1.0 / (1.0 + math.exp(-z))


def covered_share(points: np.ndarray, inliers: np.ndarray, cell: float) -> float:
    """The share of the frame that ``points`` (all of a query's keypoints) span, in cells of
    ``cell`` px, that has an inlier (``inliers``: indices into ``points``)."""
    if len(points) == 0 or len(inliers) == 0:
        return 0.0
    span = np.maximum(points.max(axis=0), cell)
    frame = math.ceil(span[0] / cell) * math.ceil(span[1] / cell)
    cells = np.unique(np.floor(points[inliers] / cell).astype(np.int64), axis=0)
    return len(cells) / frame


def confidences(scores: dict[int, float], shares: dict[int, float]) -> dict[int, float]:
    """The confidence of each verified candidate of one query (``scores``: a match-graph row's)."""
    best = max(scores.values(), default=0.0)
    return {i: confidence(s, best, shares.get(i, 0.0)) for i, s in scores.items()}


def better(*found: dict[int, float]) -> dict[int, float]:
    """Per image, the higher of the confidences found for it (a pair verified from both sides)."""
    out: dict[int, float] = {}
    for each in found:
        for i, c in each.items():
            out[i] = max(c, out.get(i, 0.0))
    return out
