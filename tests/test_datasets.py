"""Real labelled photos from ../shared/datasets, through the CLI, with the offline ImageNet backbones.

Bands sit clearly above the colour-histogram floors given in the datasets' README
(UKBench mini mAP 0.876, DVD covers all-vs-all mAP 0.048).
"""
import csv
import json
import subprocess
import sys

import pytest

from tests.helpers import datasets_or_skip

OFFLINE = ["mobilenetv2-tv", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def evaluate(folder, labels, model, method):
    result = subprocess.run([sys.executable, "-m", "app.cli", "evaluate", str(folder), "--labels", str(labels),
                             "--model", model, "--method", method, "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.datasets
@pytest.mark.parametrize("model", OFFLINE)
def test_ukbench_mini_global(database, model):
    folder = datasets_or_skip("ukbench_mini")
    metrics = evaluate(folder, folder / "groundtruth.csv", model, "global")
    assert metrics["n_queries"] == 56 and metrics["map"] > 0.95 and metrics["p_at_1"] > 0.95


@pytest.mark.datasets
@pytest.mark.parametrize("model", OFFLINE)
def test_dvd_covers_global_is_above_the_floor_but_weak(database, model):
    folder = datasets_or_skip("smvs_dvd_dev")
    metrics = evaluate(folder, folder / "groundtruth.csv", model, "global")
    assert metrics["n_queries"] == 150
    assert 0.08 < metrics["map"] < 0.4  # the study's method: above the 0.048 floor, far from solved


@pytest.mark.datasets
def test_dvd_photo_to_reference_verified(database, tmp_path):
    folder = datasets_or_skip("smvs_dvd_dev")
    labels = tmp_path / "photo_to_reference.csv"
    with open(folder / "meta.csv") as f, open(labels, "w") as out:
        out.write("filename,group,role\n")
        for row in csv.DictReader(f):
            out.write(f"{row['filename']},{row['group']},{'query' if row['role'] == 'query_photo' else 'database'}\n")
    metrics = evaluate(folder, labels, "efficientnet-lite0", "verified")
    assert metrics["n_queries"] == 120 and metrics["n_database"] == 30
    assert metrics["recall_at_1"] >= 0.95 and metrics["map"] >= 0.95


@pytest.mark.datasets
def test_a_scene_in_depth_seen_from_two_places_verifies_by_its_epipolar_geometry():
    """Two Holidays photos of one mountain lake taken from different places: no homography
    holds the near rocks and the far peaks together, a fundamental matrix does (each inlier
    counting EPIPOLAR_WEIGHT); two photos of different scenes with as many tentative matches
    as that rule needs do not verify."""
    from app.describe.keypoints import KINDS, extract
    from app.describe.local import EPIPOLAR_INLIERS, EPIPOLAR_WEIGHT, MIN_INLIERS, _homography_inliers, verify
    from app.describe.matching import Prepared, tentative_matches
    from app.files.images import load_image

    folder, sift = datasets_or_skip("holidays805") / "images", KINDS["sift"]
    lake, lake_elsewhere, other, another = (Prepared(extract(load_image(folder / name), sift), sift) for name in
                                            ("111600.jpg", "111601.jpg", "126401.jpg", "126502.jpg"))
    qi, ti = tentative_matches(lake, lake_elsewhere)
    assert _homography_inliers(lake.points[qi], lake_elsewhere.points[ti]).sum() < MIN_INLIERS
    inliers, count = verify(lake, lake_elsewhere)
    assert count == EPIPOLAR_WEIGHT and len(inliers) >= 4 * EPIPOLAR_INLIERS
    assert len(tentative_matches(other, another)[0]) >= 2 * EPIPOLAR_INLIERS
    assert len(verify(other, another)[0]) < MIN_INLIERS
