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
