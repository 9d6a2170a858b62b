"""How likely two photos show the same item, from the evidence a verification gives (pure functions).

A query's verified candidates each have a background-weighted score (``app.retrieval.rerank``:
cells of the query its inliers cover, each weighted against what many candidates share). The
confidence that candidate d shows the query's item is a logistic function of three things:
- the score itself (its logarithm): a match on the item spreads over many cells, and a part of
  the query that many candidates match (a desk, a wall, a textbook) counts little in it;
- the share of the query's frame with an inlier (cells of the inliers over the cells the
  query's keypoints span): the score counts cells of a fixed size, so a small photo (325 px,
  about 35 cells) can cover only a few, and the share says what they are of the whole;
- whether the pair verified at Lowe's ratio 0.8, or only in the second look at 0.85 that a
  query gets when none of its candidates verified: that look finds hard views of an item, but
  among photos of different items it also finds 16-18 epipolar "inliers" of chance.

``1 / (1 + exp(-(INTERCEPT + LOG_SCORE x ln(score) + SHARE x share + FIRST_LOOK x [ratio 0.8])))``.
An edge of the match graph, verified from both sides, takes the better of its two. No term
depends on the other candidates' scores beyond the background weighting: a photo whose only
verified candidate is a look-alike is judged by what it matched, not by being the best there.
The constants were fitted by logistic regression on the directed edges of labelled sets
(DVD covers, Holidays, UKBench, the calendar, and sets without a single true pair: one photo
per Holidays scene, the DVD photos taken on one textbook page) and checked with each set held
out in turn (docs/quality.md); they are plain numbers, not tuned per collection. Every weight
is positive: more evidence never lowers a confidence.
"""
from __future__ import annotations

import math

import numpy as np

# fitted again when SIFT moved to 768 px (2026-12-05; docs/quality.md): the same procedure
INTERCEPT = -5.846
LOG_SCORE = 1.133  # per unit of ln(background-weighted score)
SHARE = 14.009  # per unit of the share of the query's frame with an inlier
FIRST_LOOK = 2.379  # verified at ratio 0.8, not only in the second look


def same_item_confidence(score: float, share: float, first_look: bool = True) -> float:
    """The confidence of a verified candidate with ``score`` whose inliers cover ``share`` of
    the query's frame (``first_look``: it verified at the standard ratio)."""
    if score <= 0:
        return 0.0
    z = INTERCEPT + LOG_SCORE * math.log(score) + SHARE * min(1.0, share) + (FIRST_LOOK if first_look else 0.0)
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


def better(*found: dict[int, float]) -> dict[int, float]:
    """Per image, the higher of the confidences found for it (a pair verified from both sides)."""
    out: dict[int, float] = {}
    for each in found:
        for i, c in each.items():
            out[i] = max(c, out.get(i, 0.0))
    return out
