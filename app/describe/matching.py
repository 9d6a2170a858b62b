"""Tentative matches of local features (``app.describe.keypoints``): Lowe's ratio test on the two
nearest neighbours, one-to-one. SIFT codes are compared by the cosine of their RootSIFT values
(a product of the two sets of codes), ORB bits by Hamming distance (OpenCV).

Rules (fixed, documented defaults): a keypoint is matched where its nearest neighbour is nearer
than ``RATIO`` (0.8) times the second nearest; each database keypoint keeps only its closest
query match (repeated texture cannot inflate the count). Verification is
``app.describe.local``'s.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from app.describe.keypoints import LocalFeatures, LocalKind

RATIO = 0.8


class Prepared:
    """A feature set ready for matching: the SIFT codes as float32 with their inverse norms, or
    the raw bits for ORB."""

    def __init__(self, features: LocalFeatures, kind: LocalKind):
        self.points = features.points
        self.kind = kind
        self.desc = features.descriptors if kind.binary else features.descriptors.astype(np.float32)
        self.inverse_norms = None if kind.binary else 1 / np.maximum(np.linalg.norm(self.desc, axis=1), 1e-7)

    def __len__(self) -> int:
        return len(self.points)


_HAMMING = cv2.BFMatcher(cv2.NORM_HAMMING)


def tentative_matches(q: Prepared, d: Prepared, ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-tested, one-to-one matches as (query indices, database indices)."""
    if len(q) < 2 or len(d) < 2:
        return NO_MATCHES
    if q.kind.binary:
        return _hamming_matches(q, d, ratio)
    return ratio_tests(q, d, ratio)[0]


def matches_both_ways(q: Prepared, d: Prepared) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``tentative_matches(q, d)`` and ``tentative_matches(d, q)`` from one product of the
    descriptors (SIFT): the second is the ratio test down the product's columns."""
    if len(q) < 2 or len(d) < 2 or q.kind.binary:
        return tentative_matches(q, d), tentative_matches(d, q)
    return ratio_tests(q, d, both=True)


def similarity(q: Prepared, d: Prepared, rows: slice = slice(None), out: np.ndarray | None = None,
               scale: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities of the SIFT codes (rows: ``q``'s, or those of ``rows``), bit for bit
    the transpose of ``similarity(d, q)``: products of 4-bit codes are integers, exact in float32
    in any order, and each pair's two norms are multiplied once. So a pair's matches do not
    depend on which of its images asked, nor on the blocks the product is computed in, whatever
    the order of the matrix library's sums (4-bit codes tie often). ``out`` and ``scale``:
    float32 arrays of the result's shape to compute in (``scale`` is overwritten)."""
    sim = np.matmul(q.desc[rows], d.desc.T, out=out)
    sim *= np.multiply(q.inverse_norms[rows, None], d.inverse_norms[None, :], out=scale)
    return sim


# Elements of the product computed at once: its rows are tested a block of 1 MiB of float32 at a
# time, near the cache, where the whole product (4 MB for 1000 x 1000 keypoints) went through
# memory five times, which two verification threads had to share (measured on 2 cores, pairs
# per second: blocks of 2^18 elements 1.16x the whole product, 2^17 1.10x, 2^19 1.03x).
BLOCK = 2**18


def ratio_tests(q: Prepared, d: Prepared, ratio: float = RATIO, both: bool = False,
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Lowe's ratio test of the SIFT product's rows (``q``'s keypoints among ``d``'s), and with
    ``both`` of its columns (``d``'s among ``q``'s), one-to-one: (forward matches, backward
    matches or None). The product is computed ``BLOCK`` elements at a time and never whole."""
    n, m = len(q), len(d)
    step = max(1, BLOCK // m)
    best, first, second = np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32)
    columns = _ColumnsTopTwo(m) if both else None
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = similarity(q, d, slice(start, stop), _scratch(0, stop - start, m), _scratch(1, stop - start, m))
        if columns is not None:  # down the columns: a transposed copy (the test overwrites it); 3x numpy's
            columns.add(cv2.transpose(block, _scratch(1, m, stop - start)), start)
        best[start:stop], first[start:stop], second[start:stop] = _top_two(block)
    forward = _passing(best, first, second, ratio)
    return forward, None if columns is None else _passing(columns.best, columns.first, columns.second, ratio)


class _ColumnsTopTwo:
    """The two highest similarities down each column of a product seen a block of rows at a
    time, and the row of the highest: what the ratio test of the whole transposed product
    finds (a tie keeps the first row, as ``argmax`` does, and fails the test)."""

    def __init__(self, columns: int):
        self.first = np.full(columns, -np.inf, np.float32)
        self.second = self.first.copy()
        self.best = np.zeros(columns, np.int64)

    def add(self, transposed: np.ndarray, start: int) -> None:
        """The block whose rows begin at ``start``, transposed (it is overwritten)."""
        best, first, second = _top_two(transposed)
        higher = first > self.first
        self.second = np.where(higher, np.maximum(self.first, second), np.maximum(self.second, first))
        self.best = np.where(higher, best + start, self.best)
        self.first = np.where(higher, first, self.first)


_SCRATCH = threading.local()


def _scratch(slot: int, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) float32 array of this thread's, reused by its next verification: a new
    array for each product of a pair cost more in page faults than scaling the product."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    if buffers.get(slot, np.empty(0, np.float32)).size < rows * cols:
        buffers[slot] = np.empty(rows * cols, np.float32)
    return buffers[slot][:rows * cols].reshape(rows, cols)


NO_MATCHES = (np.zeros(0, int), np.zeros(0, int))


def _top_two(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's most similar column (the first of a tie), its similarity, and the next highest
    similarity in the row (``sim`` is overwritten)."""
    rows = np.arange(len(sim))
    best = sim.argmax(axis=1)
    first = sim[rows, best]
    sim[rows, best] = -2.0
    return best, first, sim.max(axis=1)


def _passing(best: np.ndarray, first: np.ndarray, second: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows (queries) whose nearest column passes the ratio test against the second
    nearest, matched one-to-one."""
    d1 = np.sqrt(np.maximum(2 - 2 * first, 0))
    d2 = np.sqrt(np.maximum(2 - 2 * second, 0))
    keep = d1 < ratio * d2
    return one_to_one(np.arange(len(best))[keep], best[keep], d1[keep])


def _hamming_matches(q: Prepared, d: Prepared, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = _HAMMING.knnMatch(q.desc, d.desc, k=2)
    rows = [(m[0].queryIdx, m[0].trainIdx, m[0].distance) for m in pairs
            if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if not rows:
        return NO_MATCHES
    return one_to_one(*(np.array(c) for c in zip(*rows)))


def one_to_one(qi: np.ndarray, ti: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each database keypoint keeps only its closest query match."""
    order = np.lexsort((dist, ti))
    ti_sorted = ti[order]
    first = np.r_[True, ti_sorted[1:] != ti_sorted[:-1]] if len(order) else np.zeros(0, bool)
    return qi[order][first], ti_sorted[first]
