"""Spatial verification of local features (``app.describe.keypoints``): keypoints matched
one-to-one with Lowe's ratio test, verified by a RANSAC homography (OpenCV's USAC MAGSAC).

Rules (fixed, documented defaults):
- A match needs ratio < 0.8 to the second-best neighbour; each database keypoint keeps only
  its best query match (one-to-one), so repeated texture cannot inflate the count
  (``app.describe.matching``). A query none
  of whose candidates is verified (a hard view, a small or blurred photo) has its candidates
  matched again at ``RETRY_RATIO`` (0.85): its true matches are often just past 0.8, and the
  verification below still holds chance out.
- The homography needs 8+ tentative matches, 6 px reprojection error, and must be
  non-degenerate: orientation preserved (det > 0), area scale within 1/100..100, mild perspective.
- Each RANSAC draws as many samples as finding a model with the inliers it needs
  (``MIN_INLIERS``, ``EPIPOLAR_INLIERS``) takes at 99.9% confidence, at most 2000 and 244
  (``samples_needed``): a pair whose few tentative matches cannot hold such a model is refused
  after tens of samples, not thousands.
- Where the homography finds fewer than ``MIN_INLIERS``, a fundamental matrix (USAC MAGSAC,
  ``EPIPOLAR_PX`` from the epipolar line) may verify the pair as a 3-D scene seen from two
  places, with at least ``EPIPOLAR_INLIERS`` (16) inliers, each counting ``EPIPOLAR_WEIGHT``.
- A candidate is *verified* with at least ``MIN_INLIERS`` (10) inliers; fewer is weak and the
  candidate keeps its first-stage order below every verified one.
- Verified candidates are ordered by the cells of the query their inliers cover, weighted
  against shared backgrounds: an inlier counts 1/n where n is the number of verified candidates
  with an inlier within ``BURST_RADIUS`` (10% of the longest side) of it in the query, each
  cell counts its best inlier once and every inlier a tenth (see ``app.retrieval.rerank``).
- Where the match graph exists (``imgsim index graph``), each verified candidate's stored verified
  neighbours are added with its score relative to the best candidate's as weight (``app.collection.graph``).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import cv2
import numpy as np

from app.config import get_settings
from app.describe.matching import NO_MATCHES, RATIO, Prepared, tentative_matches

MIN_INLIERS = 10
EPIPOLAR_PX = 1.5  # px: an epipolar inlier lies this close to its epipolar line
# The weaker model's rule, from what an inlier tells against chance: a homography inlier falls in
# a 6 px disc, an epipolar one in a 3 px band across the frame (log2 of the frame's area over the
# disc, and of its side over the band: 9.4 and 6.8 bits at 325 px, 12.8 and 8.4 at 1024 px). The
# 6 inliers a homography needs past its 4-point sample are worth 8-9 past a fundamental matrix's
# 7-point one: 16 in all, and each counts 10/16 of a homography inlier.
EPIPOLAR_INLIERS = 16
EPIPOLAR_WEIGHT = MIN_INLIERS / EPIPOLAR_INLIERS
# The fallback looks for a scene that most of the tentative matches agree on (a share of 0.6 or
# more; the pairs it is for have 0.7-0.9): samples enough to draw 7 of them at once with 99.9%
# confidence (244). A pair without such a scene stops there instead of searching 2000 samples.
EPIPOLAR_SHARE = 0.6
CONFIDENCE = 0.999  # of each RANSAC: that it drew a sample of inliers only, where a model verifies
EPIPOLAR_SAMPLES = math.ceil(math.log(1 - CONFIDENCE) / math.log(1 - EPIPOLAR_SHARE ** 7))
BURST_RADIUS = 0.1 * 1024  # px: inliers this close in the query count as the same part of it
# A query none of whose candidates verifies at RATIO is matched again at this: over Holidays'
# relevant pairs that found no inlier at 0.8, 18% verify at 0.85 (a hard pair's true matches lie
# just past 0.8); of its non-relevant shortlist pairs, 1 in 1,500 does (12% at 0.9: too loose for
# the 10-inlier homography to hold chance out in a 325 px frame).
RETRY_RATIO = 0.85
REPROJECTION_PX = 6.0
HOMOGRAPHY_SAMPLES = 2000


def samples_needed(matches: int, inliers: int, size: int, most: int) -> int:
    """RANSAC samples (of ``size`` matches) that hold one of inliers only with ``CONFIDENCE``
    where ``inliers`` of ``matches`` are inliers, at most ``most``: a model must have
    ``inliers`` to verify a pair, so where that is a large share of few tentative matches (most
    pairs that do not show one item: 16-30 matches on the DVD photos), searching longer only
    looks for a model that would be refused (2000 samples cost 1.3 ms a pair; for 20 matches
    and 10 inliers 108 are enough). Where a pair has no more matches than that, ``most``."""
    share = inliers / matches if matches else 1.0
    if share >= 1.0:
        return most
    return int(min(most, math.ceil(math.log(1 - CONFIDENCE) / math.log(1 - share ** size))))


def _degenerate(h: np.ndarray) -> bool:
    det = float(np.linalg.det(h[:2, :2]))
    return not (1e-2 < det < 1e2) or abs(h[2, 0]) > 2e-3 or abs(h[2, 1]) > 2e-3


def verify(q: Prepared, d: Prepared, matches: tuple[np.ndarray, np.ndarray] | None = None,
           ratio: float = RATIO) -> tuple[np.ndarray, float]:
    """(indices of the query keypoints that are inliers against ``d``, empty when none; what
    each counts: 1 under a homography, ``EPIPOLAR_WEIGHT`` under a fundamental matrix);
    ``matches``: the pair's tentative matches at ``ratio`` when they are known already."""
    qi, _, weight = inlier_matches(q, d, matches, ratio)
    return qi, weight


def verify_candidates(q: Prepared, candidates: dict[int, Prepared],
                      known: Callable[[int, Prepared], tuple[np.ndarray, np.ndarray] | None] = lambda i, d: None,
                      ) -> dict[int, tuple[np.ndarray, float]]:
    """``verify`` of each candidate (``known``: a candidate's tentative matches at RATIO when
    they are known already); where none has MIN_INLIERS, every one again at RETRY_RATIO. The
    candidates are verified in the process's verification threads (``in_threads``), each one
    apart from the others, so the result does not depend on how many there are."""
    return verify_all(q, candidates, known)[0]


def verify_all(q: Prepared, candidates: dict[int, Prepared],
               known: Callable[[int, Prepared], tuple[np.ndarray, np.ndarray] | None] = lambda i, d: None,
               ) -> tuple[dict[int, tuple[np.ndarray, float]], float]:
    """``verify_candidates`` and the ratio its results were matched at (RATIO, or RETRY_RATIO
    where none verified at RATIO: a second look, whose verifications say less)."""
    pairs = list(candidates.items())
    found = dict(zip(candidates, in_threads(lambda pair: verify(q, pair[1], known(*pair)), pairs)))
    if any(len(inliers) >= MIN_INLIERS for inliers, _ in found.values()):
        return found, RATIO
    return dict(zip(candidates, in_threads(lambda pair: verify(q, pair[1], ratio=RETRY_RATIO), pairs))), RETRY_RATIO


_T = TypeVar("_T")
_R = TypeVar("_R")
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def in_threads(work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``work`` of each item, in order, run in ``IMGSIM_VERIFY_THREADS`` threads of this
    process. A pair's verification is a descriptor product and OpenCV's RANSAC, which hold no
    lock of Python's, so the threads share the process's work, its descriptors and the
    tentative matches a job keeps, where processes would each compute their own."""
    threads = min(get_settings().verify_threads, len(items))
    if threads < 2:
        return [work(item) for item in items]
    return list(_pool(get_settings().verify_threads).map(work, items))


def _pool(threads: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if threads not in _POOLS:
            from threadpoolctl import threadpool_limits  # here: a search that verifies nothing never loads it

            # the threads are the parallelism: a product that also took the matrix library's
            # threads would ask for threads x cores (measured: 1.56x slower on 2 cores)
            threadpool_limits(1, user_api="blas")
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="imgsim-verify")
        return _POOLS[threads]


def pair_inliers(q: Prepared, d: Prepared) -> tuple[np.ndarray, np.ndarray, float]:
    """``inlier_matches`` of one pair as a query with no other candidate would verify it: at
    RATIO, else at RETRY_RATIO."""
    found = inlier_matches(q, d)
    return found if len(found[0]) >= MIN_INLIERS else inlier_matches(q, d, ratio=RETRY_RATIO)


def inlier_matches(q: Prepared, d: Prepared, matches: tuple[np.ndarray, np.ndarray] | None = None,
                   ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray, float]:
    """The inlier correspondences as (query keypoint indices, their matches in ``d``, what each
    counts): a homography's, or where it has fewer than MIN_INLIERS a fundamental matrix's
    with at least EPIPOLAR_INLIERS (a scene in depth seen from two places)."""
    qi, ti = tentative_matches(q, d, ratio) if matches is None else matches
    if len(qi) < 8:
        return *NO_MATCHES, 1.0
    a, b = q.points[qi], d.points[ti]
    plane = _homography_inliers(a, b)
    if plane.sum() < MIN_INLIERS and len(qi) >= EPIPOLAR_INLIERS:
        depth = _epipolar_inliers(a, b)
        if depth.sum() >= EPIPOLAR_INLIERS:
            return qi[depth], ti[depth], EPIPOLAR_WEIGHT
    return qi[plane], ti[plane], 1.0


def _homography_inliers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    samples = samples_needed(len(a), MIN_INLIERS, 4, HOMOGRAPHY_SAMPLES)
    h, mask = cv2.findHomography(a, b, cv2.USAC_MAGSAC, REPROJECTION_PX, maxIters=samples, confidence=CONFIDENCE)
    if h is None or mask is None or _degenerate(h):
        return np.zeros(len(a), bool)
    return mask.ravel().astype(bool)


def _epipolar_inliers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        samples = samples_needed(len(a), EPIPOLAR_INLIERS, 7, EPIPOLAR_SAMPLES)
        f, mask = cv2.findFundamentalMat(a, b, cv2.USAC_MAGSAC, EPIPOLAR_PX, CONFIDENCE, samples)
    except cv2.error:  # MAGSAC found no model it could refine
        f = mask = None
    if f is None or mask is None or f.shape != (3, 3):
        return np.zeros(len(a), bool)
    return mask.ravel().astype(bool)
