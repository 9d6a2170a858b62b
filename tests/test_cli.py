"""The ``imgsim`` command end to end, as a user runs it (real database, real offline weights)."""
import json
import os
import subprocess
import sys

import psycopg
import pytest

from tests.helpers import make_images

MODEL = "efficientnet-lite0"


def imgsim(*args, check=True):
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"imgsim {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def test_models_json_lists_every_backbone_with_offline_weights_present():
    rows = json.loads(imgsim("models", "--json").stdout)
    assert len(rows) == 17
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet50"]["dim"] == 2048 and by_name["inceptionv3"]["input_size"] == 299
    for name in ("mobilenetv2-tv", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        assert by_name[name]["weights_present"] is True and by_name[name]["offline"] is True


def test_ingest_search_failures_and_sql(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.png", "c.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.jpg,alpha\nb.png,beta\nc.jpg,alpha\n")
    first = imgsim("ingest", tmp_path, "--model", MODEL, "--labels", labels, check=False)
    assert first.returncode == 3, first.stderr  # finished, some inputs failed
    assert "broken.jpg" in first.stderr and "found 4: new 3, skipped 0, failed 1" in first.stdout
    again = imgsim("ingest", tmp_path, "--model", MODEL, check=False)
    assert "new 0, skipped 3" in again.stdout

    hits = json.loads(imgsim("search", tmp_path / "a.jpg", "--model", MODEL, "-k", "3", "--json").stdout)
    assert [h["path"].rsplit("/", 1)[-1] for h in hits][0] == "a.jpg"
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-6) and hits[0]["label"] == "alpha"
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert set(hits[0]) >= {"path", "distance", "label"}

    table = imgsim("search", tmp_path / "a.jpg", "--model", MODEL).stdout
    assert "a.jpg" in table and "alpha" in table

    new = tmp_path.parent / f"{tmp_path.name}-query.png"
    make_images(tmp_path.parent, [new.name], seed=9)
    on_the_fly = json.loads(imgsim("search", new, "--model", MODEL, "-k", "2", "--json").stdout)
    assert len(on_the_fly) == 2 and on_the_fly[0]["distance"] > 0

    failures = json.loads(imgsim("failures", "--json").stdout)
    assert [f["path"].rsplit("/", 1)[-1] for f in failures] == ["broken.jpg"]

    url = imgsim("db", "url").stdout.strip()
    assert url == database
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.path, e.embedding <=> (SELECT embedding FROM emb_efficientnet_lite0 q "
            "JOIN images qi ON qi.id = q.image_id WHERE qi.path LIKE '%/a.jpg') AS distance "
            "FROM emb_efficientnet_lite0 e JOIN images i ON i.id = e.image_id ORDER BY distance LIMIT 3").fetchall()
    assert [r[0] for r in rows] == [h["path"] for h in hits]


def test_unknown_model_and_hostile_names_fail_from_the_registry(database, tmp_path):
    result = imgsim("search", "1", "--model", "x'; DROP TABLE images; --", check=False)
    assert result.returncode == 1 and "unknown model" in result.stderr
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('images')").fetchone()[0] == "images"


def test_db_downgrade_and_upgrade_commands(database):
    assert "base" in imgsim("db", "downgrade", "base").stdout
    from app.migrate import heads

    assert heads()[0] in imgsim("db", "upgrade").stdout


def test_missing_keras_weights_fail_offline_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSIM_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    result = imgsim("models", "fetch", "vgg16", check=False)
    assert result.returncode == 1
    line = [l for l in result.stderr.splitlines() if l.startswith("vgg16:")]
    assert len(line) == 1
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in line[0]
    assert "imgsim models fetch vgg16" in line[0] and str(tmp_path / "empty-cache") in line[0]
