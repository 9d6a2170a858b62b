"""The verified pipeline's shortcuts (less work, the same answers): each decides the pairs it
claims to, and the match graph built with it equals the one built without it."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from app.describe import local
from app.describe.keypoints import KINDS, extract
from app.describe.local import EPIPOLAR_SAMPLES, HOMOGRAPHY_SAMPLES, samples_needed
from app.describe.matching import Prepared, tentative_matches

SIFT = KINDS["sift"]


def _without_sample_bounds(monkeypatch):
    monkeypatch.setattr(local, "samples_needed", lambda matches, inliers, size, most: most)


def test_ransac_draws_the_samples_a_verifying_model_needs():
    for matches in (12, 20, 30, 40):  # the fewest k with (1 - share^4)^k <= 0.001
        k = samples_needed(matches, 10, 4, HOMOGRAPHY_SAMPLES)
        miss = 1 - (10 / matches) ** 4
        assert miss ** k <= 0.001 < miss ** (k - 1), matches
    assert samples_needed(20, 10, 4, HOMOGRAPHY_SAMPLES) == 108
    assert samples_needed(60, 10, 4, HOMOGRAPHY_SAMPLES) == HOMOGRAPHY_SAMPLES  # a small share: the old bound
    assert samples_needed(20, 16, 7, EPIPOLAR_SAMPLES) == math.ceil(math.log(0.001) / math.log(1 - 0.8 ** 7))
    assert samples_needed(40, 16, 7, EPIPOLAR_SAMPLES) == EPIPOLAR_SAMPLES
    for matches in (0, 8, 10):  # no more matches than the inliers needed: as before
        assert samples_needed(matches, 10, 4, HOMOGRAPHY_SAMPLES) == HOMOGRAPHY_SAMPLES
    # more matches never need fewer samples
    needed = [samples_needed(n, 10, 4, HOMOGRAPHY_SAMPLES) for n in range(11, 80)]
    assert needed == sorted(needed)


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {name: Image.fromarray(getattr(data, name)()).convert("RGB")
            for name in ("astronaut", "coffee", "chelsea", "rocket")}


def _prepared(image: Image.Image) -> Prepared:
    return Prepared(extract(image, SIFT), SIFT)


def _seen_from_aside(image: Image.Image) -> Image.Image:
    w, h = image.size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0.08 * w, 0.05 * h], [0.95 * w, 0], [w, h], [0.02 * w, 0.9 * h]])
    return Image.fromarray(cv2.warpPerspective(np.asarray(image), cv2.getPerspectiveTransform(src, dst), (w, h)))


def test_a_clear_match_keeps_its_inliers_and_a_non_match_is_refused_early(photos, monkeypatch):
    same = (_prepared(photos["astronaut"]), _prepared(_seen_from_aside(photos["astronaut"])))
    others = [(_prepared(photos[a]), _prepared(photos[b])) for a, b in
              (("coffee", "chelsea"), ("rocket", "coffee"), ("chelsea", "astronaut"))]
    bounded = [local.inlier_matches(*pair) for pair in (same, *others)]
    _without_sample_bounds(monkeypatch)
    full = [local.inlier_matches(*pair) for pair in (same, *others)]
    assert len(bounded[0][0]) >= 50 and np.array_equal(bounded[0][0], full[0][0])  # accepted, the same inliers
    for b, f in zip(bounded[1:], full[1:]):
        assert len(b[0]) < local.MIN_INLIERS and len(f[0]) < local.MIN_INLIERS  # refused either way
    # the non-matches that reach RANSAC draw fewer samples than the fixed bound
    counts = [len(tentative_matches(*pair)[0]) for pair in others]
    assert any(local.MIN_INLIERS < n and samples_needed(n, local.MIN_INLIERS, 4, HOMOGRAPHY_SAMPLES)
               < HOMOGRAPHY_SAMPLES for n in counts), counts


def test_the_match_graph_is_the_same_without_the_shortcuts(engine, lite0_embedders, calendar, monkeypatch):
    from app import api
    from app.config import get_settings
    from tests.helpers import ingestor
    from tests.test_ray_engine import LITE0, _graph_by_sha

    monkeypatch.setenv("IMGSIM_GRAPH_WORKERS", "1")  # the rows computed here, where the patch holds
    get_settings.cache_clear()
    try:
        folder, _ = calendar
        ingestor(engine, [LITE0], "gem+sift", "default", embedders=lite0_embedders, graph=True).run(folder)
        with_shortcuts = _graph_by_sha(engine, "default")
        _without_sample_bounds(monkeypatch)
        api.build_graph(LITE0.name, "gem+sift", rebuild=True, engine=engine)
        assert sum(map(len, with_shortcuts.values())) > 100 and _graph_by_sha(engine, "default") == with_shortcuts
    finally:
        get_settings.cache_clear()


def test_sift_detects_at_768_px_and_keeps_the_1024_px_frame(photos):
    """Keypoints found at 768 px are stored where the same points lie at 1024 px: a photo and its
    copy at twice the size give the same keypoints in the frame (the larger is reduced first)."""
    from app.describe.keypoints import DETECT_SIDE, LONGEST_SIDE

    photo = photos["astronaut"].resize((1024, 1024))
    small, large = extract(photo, SIFT), extract(photo.resize((2048, 2048), Image.LANCZOS), SIFT)
    assert SIFT.detect_side == DETECT_SIDE == 768 and LONGEST_SIDE == 1024
    assert small.points.max() > 900 and small.points.max() <= 1024  # spread over the 1024 frame, not 768
    near = np.linalg.norm(small.points[:, None] - large.points[None], axis=2).min(axis=1)
    assert np.median(near) < 1.0 and len(small) >= 0.9 * len(large)
    # a smaller picture of a larger photo (a camera's preview): found in it, placed in the photo's frame
    preview = extract(photo.resize((512, 512), Image.LANCZOS), SIFT, shown=(4000, 4000))
    assert preview.points.max() > 900 and preview.points.max() <= 1024


def test_preprocessing_in_place_gives_the_plain_expressions_values_and_leaves_the_batch():
    from app.describe import preprocess as p

    plain = {"caffe": lambda x: x[..., ::-1] - p._CAFFE_BGR_MEAN, "tf": lambda x: x / 127.5 - 1.0,
             "torch": lambda x: (x / 255.0 - p._IMAGENET_MEAN) / p._IMAGENET_STD,
             "lite": lambda x: (x - 127.0) / 128.0, "none": lambda x: x}
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 24, 3), np.uint8)
    kept = batch.copy()
    for kind, expression in plain.items():
        expected = expression(batch.astype(np.float32)).astype(np.float32)
        got = p.preprocess(kind, batch)
        assert got.dtype == np.float32 and np.array_equal(got, expected), kind
        floats = batch.astype(np.float32)
        assert p.preprocess(kind, floats) is not floats and np.array_equal(floats, kept), kind  # a copy
    assert set(plain) == set(p.PREPROCESSORS) and np.array_equal(batch, kept)
