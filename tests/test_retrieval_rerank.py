"""The re-ranking rules on constructed candidates (no images needed)."""
import numpy as np
import pytest

from app.retrieval.hits import Hit
from app.describe.local import EPIPOLAR_WEIGHT, MIN_INLIERS
from app.store.scope import Scope
from app.retrieval.rerank import (FUSION_WEIGHT, INLIER_SHARE, background_weights, fuse, order, through_graph,
                                  verified_scores)


def test_graph_expansion_adds_the_verified_neighbours_of_verified_candidates():
    score = {1: 40.0, 2: 20.0}  # path weights (40/40)^2 = 1 and (20/40)^2 = 0.25
    graph = {1: {3: 10.0, 2: 5.0, 9: 7.0}, 2: {4: 8.0, 1: 30.0, 3: 60.0}}
    # 3: best single path max(1 x 10, 0.25 x 60); 9 is the query itself
    assert through_graph(score, graph, query_id=9) == {1: 47.5, 2: 25.0, 3: 15.0, 4: 2.0}
    assert through_graph(score, graph, query_id=9, allowed=Scope.of(1, [1, 2, 4]).allows) == {1: 47.5, 2: 25.0, 4: 2.0}


def test_background_weights_share_an_inlier_between_the_candidates_that_use_it():
    # Query keypoints 0-2 sit together (a shared background), 3 far away (the item).
    points = np.array([[0, 0], [10, 0], [0, 10], [900, 900]], np.float32)
    scores = background_weights(points, {1: np.array([0, 3]), 2: np.array([1]), 3: np.array([2])})
    # keypoints 0, 1, 2 are within BURST_RADIUS of each other and used by 3 candidates: 1/3 each;
    # each inlier in a cell of its own: its cell's count and a tenth more (INLIER_SHARE)
    share = 1 + INLIER_SHARE
    assert scores == pytest.approx({1: share * (1 / 3 + 1.0), 2: share / 3, 3: share / 3})
    assert background_weights(points, {}) == {}
    # a candidate verified by its epipolar geometry: each of its inliers counts EPIPOLAR_WEIGHT
    weaker = background_weights(points, {1: np.array([0, 3]), 2: np.array([1])}, {1: EPIPOLAR_WEIGHT})
    assert weaker == pytest.approx({1: EPIPOLAR_WEIGHT * share * (1 / 2 + 1.0), 2: share / 2})


def test_fusion_and_order_put_verified_first_and_keep_the_rest_in_first_stage_order():
    hits = [Hit(9, "q", 0.0, None), Hit(1, "a", 0.1, None), Hit(2, "b", 0.2, None), Hit(3, "c", 0.3, None)]
    known = {h.image_id: h for h in hits}
    fused = fuse({3: 12.0, 2: 12.0}, known)
    assert fused == pytest.approx({3: 12.0 + FUSION_WEIGHT * 0.7, 2: 12.0 + FUSION_WEIGHT * 0.8})
    ranked = order(hits, fused, known, {2: np.arange(12), 3: np.arange(12), 1: np.arange(4)}, query_id=9)
    assert [h.image_id for h in ranked] == [9, 2, 3, 1]  # equal inliers: the first stage breaks the tie
    assert (ranked[3].inliers, ranked[3].score) == (4, None)  # weak: counted, not scored


def test_a_candidate_is_verified_from_ten_inliers():
    assert MIN_INLIERS == 10
    points = np.stack([np.arange(40) * 100.0, np.zeros(40)], axis=1).astype(np.float32)  # far apart: weight 1
    inliers = {1: np.arange(10), 2: np.arange(10, 19), 3: np.array([], int)}
    assert verified_scores(points, inliers) == pytest.approx({1: 10.0 * (1 + INLIER_SHARE)})


def test_one_product_gives_the_ratio_test_both_ways():
    """The match graph verifies (a, b) and later (b, a) from one descriptor product."""
    from PIL import Image
    from skimage import data

    from app.describe.keypoints import KINDS, extract
    from app.describe.matching import Prepared, matches_both_ways, similarity, tentative_matches

    photo = Image.fromarray(data.astronaut())
    turned = photo.rotate(8, resample=Image.BILINEAR).resize((400, 380))
    a, b = (Prepared(extract(p, KINDS["sift"]), KINDS["sift"]) for p in (photo, turned))
    assert np.array_equal(similarity(a, b), similarity(b, a).T)  # bit for bit: the pair's matches are its own
    forward, backward = matches_both_ways(a, b)
    for got, expected in ((forward, tentative_matches(a, b)), (backward, tentative_matches(b, a))):
        assert len(expected[0]) > 50
        assert {tuple(p) for p in zip(*got)} == {tuple(p) for p in zip(*expected)}
    assert {tuple(p) for p in zip(*forward)} != {tuple(p) for p in zip(backward[1], backward[0])}  # not symmetric


def test_the_product_seen_a_block_at_a_time_matches_as_the_whole_product(monkeypatch):
    """The ratio tests compute the product a block of rows at a time and find the matches the
    whole product gives, both ways, whatever the block's size; keypoints repeated in a photo
    tie (a tie fails the test), across blocks too."""
    import app.describe.matching as matching
    from app.describe.keypoints import KINDS, LocalFeatures
    from app.describe.matching import Prepared, matches_both_ways, one_to_one, similarity, tentative_matches

    def whole(sim, ratio):
        rows = np.arange(len(sim))
        best, rest = sim.argmax(axis=1), sim.copy()
        rest[rows, best] = -2.0
        d1, d2 = (np.sqrt(np.maximum(2 - 2 * s, 0)) for s in (sim[rows, best], rest.max(axis=1)))
        keep = d1 < ratio * d2
        return one_to_one(rows[keep], best[keep], d1[keep])

    rng = np.random.default_rng(7)
    codes = rng.integers(0, 16, (300, 64))
    codes[250:] = codes[:50]  # keypoints repeated in a photo: ties down the product's columns
    near = np.clip(codes[:250] + rng.integers(-1, 2, (250, 64)), 0, 15)
    near[200:] = near[100:150]  # and along its rows
    a, b = (Prepared(LocalFeatures(rng.uniform(0, 500, (len(c), 2)).astype(np.float32), c.astype(np.uint8)),
                     KINDS["sift"]) for c in (codes, near))
    sim = similarity(a, b)
    for ties in (sim, sim.T):  # rows whose nearest ties, both ways
        assert ((ties == ties.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum() >= 50
    for block in (matching.BLOCK, 250 * 7, 1):  # the default, 7 rows at a time, one row at a time
        monkeypatch.setattr(matching, "BLOCK", block)
        forward, backward = matches_both_ways(a, b)
        for got, expected in ((forward, whole(sim, 0.8)), (backward, whole(sim.T.copy(), 0.8)),
                              (tentative_matches(a, b, 0.85), whole(sim, 0.85))):
            assert len(expected[0]) > 20 and all(np.array_equal(g, e) for g, e in zip(got, expected))


def test_compact_sift_keeps_the_verification_of_full_rootsift_in_36_bytes_a_keypoint():
    """The stored form (merged orientation bins, 4-bit codes, 1/32 px keypoints) verifies a
    turned, shrunk copy about as well as the full 128 RootSIFT values did."""
    import cv2
    from PIL import Image
    from skimage import data

    from app.describe.keypoints import KINDS, LocalFeatures, extract, root_sift
    from app.describe.local import verify
    from app.describe.matching import Prepared

    sift = KINDS["sift"]
    photo = Image.fromarray(data.astronaut())
    turned = photo.rotate(12, resample=Image.BILINEAR).resize((380, 400))
    compact = [extract(p, sift) for p in (photo, turned)]
    stored = [LocalFeatures.from_row(**{k: v for k, v in f.to_row().items()}, kind=sift) for f in compact]
    assert all(len(f.to_row()["points"]) + len(f.to_row()["descriptors"]) == 36 * len(f) for f in compact)
    assert all(np.array_equal(a.descriptors, b.descriptors) for a, b in zip(compact, stored))
    assert all(f.descriptors.shape[1] == 64 and f.descriptors.max() <= 15 for f in compact)

    def full(image):  # the 128 RootSIFT values, as stored before the compact form
        points, desc = cv2.SIFT_create(nfeatures=1000).detectAndCompute(np.asarray(image.convert("L")), None)
        prepared = Prepared(LocalFeatures(np.float32([k.pt for k in points]), np.zeros((len(points), 64), np.uint8)), sift)
        prepared.desc, prepared.inverse_norms = root_sift(desc), np.ones(len(points), np.float32)
        return prepared

    reference = len(verify(full(photo), full(turned))[0])
    kept = len(verify(*(Prepared(f, sift) for f in stored))[0])
    assert reference > 100 and kept >= 0.8 * reference, (kept, reference)


def test_a_photo_with_few_keypoints_is_detected_again_at_half_the_contrast_threshold():
    import cv2
    from PIL import Image
    from skimage import data

    from app.describe.keypoints import FEW_KEYPOINTS, KINDS, SIFT_CONTRAST, extract

    sift = KINDS["sift"]
    flat = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)).convert("L")) * 0.3 + 90
    flat = Image.fromarray(flat.astype(np.uint8))  # a small photo of low contrast

    def detected(contrast):
        return len(cv2.SIFT_create(nfeatures=sift.max_keypoints, contrastThreshold=contrast).detect(np.asarray(flat), None))

    assert detected(SIFT_CONTRAST) < FEW_KEYPOINTS * sift.max_keypoints
    assert len(extract(flat, sift)) == detected(SIFT_CONTRAST / 2) > 1.5 * detected(SIFT_CONTRAST)
    large = Image.fromarray(data.astronaut())  # enough keypoints: one detection, capped
    assert len(extract(large, sift)) == sift.max_keypoints


def _features(points: np.ndarray, unit: np.ndarray):
    """SIFT features with the given points and unit descriptors (as the existing form would hold)."""
    from app.describe.keypoints import KINDS, LocalFeatures
    from app.describe.matching import Prepared

    prepared = Prepared(LocalFeatures(points.astype(np.float32), np.zeros((len(points), 64), np.uint8)), KINDS["sift"])
    prepared.desc, prepared.inverse_norms = unit.astype(np.float32), np.ones(len(points), np.float32)
    return prepared


def _pair_just_past_the_ratio(ratio: float, n: int = 40):
    """A query and a photo of the same thing whose every true match has a decoy in the photo
    at ``ratio`` times its nearest distance: the ratio test passes them only above ``ratio``."""
    rng = np.random.default_rng(3)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    u = unit(rng.normal(size=(n, 64)))

    def at(distance):  # a unit vector per row at this distance from u's row
        side = rng.normal(size=(n, 64))
        side = unit(side - (side * u).sum(1, keepdims=True) * u)
        cos = 1 - distance**2 / 2
        return cos * u + np.sqrt(1 - cos**2) * side

    near = 0.6
    points = rng.uniform(0, 1000, size=(n, 2))
    moved = points * 0.8 + [50, 30]  # the thing seen smaller and shifted: a homography
    photo = _features(np.vstack([moved, rng.uniform(0, 1000, size=(n, 2))]), np.vstack([at(near), at(near / ratio)]))
    return _features(points, u), photo


def test_a_query_with_no_verified_candidate_is_matched_again_at_the_looser_ratio():
    """Where no candidate verifies at RATIO, every candidate is matched again at RETRY_RATIO;
    where one does, the others keep what RATIO gave them."""
    from app.describe.local import RETRY_RATIO, pair_inliers, verify, verify_candidates
    from app.describe.matching import RATIO

    query, photo = _pair_just_past_the_ratio((RATIO + RETRY_RATIO) / 2)
    assert len(verify(query, photo)[0]) == 0  # every true match fails the ratio test at 0.8
    assert len(verify_candidates(query, {1: photo})[1][0]) == 40  # alone: matched again at 0.85
    assert len(pair_inliers(query, photo)[0]) == 40  # as the page showing a pair draws it
    copy = _features(query.points, query.desc)  # a candidate that verifies at 0.8
    both = verify_candidates(query, {1: photo, 2: copy})
    assert (len(both[1][0]), len(both[2][0])) == (0, 40)
    query, photo = _pair_just_past_the_ratio(RETRY_RATIO + 0.02)
    assert len(verify_candidates(query, {1: photo})[1][0]) == 0  # past the looser ratio too: no match


def test_candidates_verified_in_threads_are_verified_as_one_at_a_time(monkeypatch):
    """``IMGSIM_VERIFY_THREADS`` changes where the candidates are verified, not the result:
    each candidate's inliers are those of verifying it alone in this thread (RANSAC's draws do
    not depend on the thread or on the pairs verified before)."""
    import threading

    from PIL import Image
    from skimage import data

    from app.config import get_settings
    from app.describe.keypoints import KINDS, extract
    from app.describe.local import in_threads, verify, verify_candidates
    from app.describe.matching import Prepared

    def threads(n):
        monkeypatch.setenv("IMGSIM_VERIFY_THREADS", str(n))
        get_settings.cache_clear()

    photo = Image.fromarray(data.astronaut())
    views = [photo.rotate(8, resample=Image.BILINEAR).resize((400, 380)), photo.crop((60, 40, 470, 500)),
             photo.rotate(-5, resample=Image.BILINEAR), Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    sift = KINDS["sift"]
    query = Prepared(extract(photo, sift), sift)
    candidates = {i: Prepared(extract(view, sift), sift) for i, view in enumerate(views)}
    try:
        threads(1)
        alone = {i: verify(query, d) for i, d in reversed(candidates.items())}
        assert in_threads(lambda _: threading.current_thread().name, [1, 2]) == [threading.current_thread().name] * 2
        threads(3)
        assert {name.startswith("imgsim-verify") for name in in_threads(lambda _: threading.current_thread().name,
                                                                         list(range(6)))} == {True}
        together = verify_candidates(query, candidates)
    finally:
        monkeypatch.delenv("IMGSIM_VERIFY_THREADS")
        get_settings.cache_clear()
    assert [len(alone[i][0]) >= 10 for i in range(5)] == [True, True, True, False, False]
    for i, (inliers, weight) in together.items():
        assert np.array_equal(inliers, alone[i][0]) and weight == alone[i][1]
