"""The ingestion job against the real database, with a small Keras model (random weights: plumbing only)."""
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from app.store.embeddings import stored_vectors
from app.store.images import list_failures
from app.describe.embedder import Embedder
from app.files.labels import read_labels
from app.describe.methods import get_method
from app.describe.registry import get_model
from tests.helpers import ingestor, make_images

GLOBAL = get_method("global")
SMALL = get_model("mobilenetv3small")


@pytest.fixture(scope="module")
def embedders():
    return {f"{SMALL.name}/global": Embedder(SMALL, GLOBAL, pretrained=False)}


def _ingestor(engine, embedders, models=(SMALL,)):
    return ingestor(engine, list(models), GLOBAL, embedders=embedders, pretrained=False)


def _count(engine, sql):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


NAMES = ["a.jpg", "B.JPG", "c.png", "d.webp", "e.TIFF", "f.bmp", "g.gif", "sub/h.jpeg", "日本語の写真.jpg"]


def test_ingest_stores_each_image_once_and_is_idempotent(engine, embedders, tmp_path):
    make_images(tmp_path, NAMES)
    (tmp_path / "notes.txt").write_text("not an image")
    report = _ingestor(engine, embedders).run(tmp_path)
    assert (report.found, report.new_images, report.skipped, report.failed) == (9, 9, 0, [])
    assert report.embedded == {SMALL.name: 9}
    assert _count(engine, f"SELECT count(*) FROM {SMALL.table}") == 9
    again = _ingestor(engine, embedders).run(tmp_path)
    assert (again.new_images, again.skipped, again.embedded) == (0, 9, {})
    assert _count(engine, "SELECT count(*) FROM images") == 9


def test_added_file_is_embedded_alone(engine, embedders, tmp_path):
    make_images(tmp_path, NAMES[:3])
    _ingestor(engine, embedders).run(tmp_path)
    make_images(tmp_path, ["new.png"], seed=5)
    report = _ingestor(engine, embedders).run(tmp_path)
    assert (report.new_images, report.skipped, report.embedded) == (1, 3, {SMALL.name: 1})


def test_model_added_later_embeds_only_for_that_model(engine, embedders, tmp_path):
    other = get_model("mobilenetv3large")
    make_images(tmp_path, NAMES[:4])
    _ingestor(engine, embedders).run(tmp_path)
    embedders[f"{other.name}/global"] = Embedder(other, GLOBAL, pretrained=False)
    report = _ingestor(engine, embedders, (SMALL, other)).run(tmp_path)
    assert report.new_images == 0 and report.embedded == {other.name: 4}
    assert _count(engine, f"SELECT count(*) FROM {other.table}") == 4


def test_duplicate_content_is_stored_once(engine, embedders, tmp_path):
    (path,) = make_images(tmp_path, ["one.png"])
    (tmp_path / "copy.png").write_bytes(path.read_bytes())
    report = _ingestor(engine, embedders).run(tmp_path)
    assert (report.found, report.new_images, report.skipped) == (2, 1, 1)


def test_bad_files_are_reported_recorded_and_skipped(engine, embedders, tmp_path):
    make_images(tmp_path, ["good1.jpg", "good2.png"])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not a jpeg")
    good = (tmp_path / "good1.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    seen = []
    report = _ingestor(engine, embedders).run(tmp_path, on_failure=seen.append)
    failed = {f.path.name: f.reason for f in report.failed}
    assert set(failed) == {"empty.jpg", "text.jpg", "truncated.jpg"}
    assert "empty" in failed["empty.jpg"] and "not a recognised image" in failed["text.jpg"]
    assert report.new_images == 2 and len(seen) == 3
    with engine.connect() as conn:
        rows = list_failures(conn)
    assert {r["path"].rsplit("/", 1)[-1] for r in rows} == set(failed)
    assert all("\n" not in r["reason"] for r in rows)


def test_labels_from_csv_and_vectors_are_unit_length(engine, embedders, tmp_path):
    make_images(tmp_path, ["x.jpg", "sub/y.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,group\nx.jpg,first\nsub/y.png,second\n")
    _ingestor(engine, embedders).run(tmp_path, read_labels(csv))
    with engine.connect() as conn:
        labels = dict(conn.execute(text("SELECT path, label FROM files")).all())
        ids, vectors = stored_vectors(conn, SMALL, "global")
    assert sorted(labels.values()) == ["first", "second"]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_first_load_builds_the_index_after_the_copy(engine, embedders, tmp_path):
    make_images(tmp_path, NAMES[:3])
    _ingestor(engine, embedders).run(tmp_path)
    with engine.connect() as conn:
        names = {r[0] for r in conn.execute(text(f"SELECT indexname FROM pg_indexes WHERE tablename = '{SMALL.table}'"))}
    assert f"ix_{SMALL.table}_global_hnsw" in names


def test_a_fixed_file_clears_its_failure_on_the_next_run(engine, embedders, tmp_path):
    (tmp_path / "fixed.jpg").write_text("not yet an image")
    assert [f.path.name for f in _ingestor(engine, embedders).run(tmp_path).failed] == ["fixed.jpg"]
    make_images(tmp_path, ["fixed.jpg"], seed=3)
    report = _ingestor(engine, embedders).run(tmp_path)
    assert report.new_images == 1 and not report.failed
    with engine.connect() as conn:
        assert list_failures(conn) == []


def test_files_over_the_byte_limit_fail_and_files_at_it_pass(engine, embedders, tmp_path, monkeypatch):
    from app.config import get_settings

    small, large = make_images(tmp_path, ["small.png", "large.png"], seed=4)
    large.write_bytes(large.read_bytes() + b"\0" * 64)  # trailing bytes: still a PNG, now the larger file
    limit = small.stat().st_size
    assert large.stat().st_size > limit
    monkeypatch.setenv("IMGSIM_MAX_FILE_BYTES", str(limit))
    get_settings.cache_clear()
    try:
        report = _ingestor(engine, embedders).run(tmp_path)
    finally:
        get_settings.cache_clear()
    assert report.new_images == 1
    assert [(f.path.name, f.reason) for f in report.failed] == [
        ("large.png", f"file too large: {large.stat().st_size} bytes (limit {limit}, IMGSIM_MAX_FILE_BYTES)")]


def test_a_2048_d_model_stores_real_embeddings_and_searches_them_through_halfvec(engine, tmp_path):
    from app.retrieval.search import similar
    from app.store.knn import knn_sql
    from app.store.scope import Scope

    resnet = get_model("resnet50")  # 2048-d: indexed as halfvec (HNSW takes vector up to 2000 dims)
    make_images(tmp_path, [f"r{i}.jpg" for i in range(8)], seed=6)
    ingestor(engine, [resnet], GLOBAL, embedders={f"{resnet.name}/global": Embedder(resnet, GLOBAL, pretrained=False)},
             pretrained=False).run(tmp_path)
    with engine.connect() as conn:
        ids, vectors = stored_vectors(conn, resnet, "global")
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        sql, params = knn_sql(resnet, "global", Scope(1))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), {"q": vectors[0], "k": 3, **params}))
    assert len(ids) == 8 and vectors.shape == (8, 2048)
    assert f"ix_{resnet.table}_global_hnsw" in plan
    for i, image_id in enumerate(ids):
        hits = similar(image_id, resnet.name, k=8, method="global", engine=engine).hits
        expected = 1.0 - vectors @ vectors[i]
        assert hits[0].image_id == image_id and hits[0].distance == pytest.approx(0.0, abs=2e-3)
        assert max(abs(h.distance - expected[ids.index(h.image_id)]) for h in hits) < 2e-3  # half precision


def test_stored_paths_are_absolute_whatever_folder_the_job_ran_from(engine, embedders, tmp_path, monkeypatch):
    make_images(tmp_path / "photos", ["a.jpg", "sub/b.png"])
    monkeypatch.chdir(tmp_path)
    _ingestor(engine, embedders).run(Path("photos/../photos"))  # relative, and not normalised
    with engine.connect() as conn:
        paths = sorted(r[0] for r in conn.execute(text("SELECT path FROM files")))
    assert paths == [str(tmp_path.resolve() / "photos" / "a.jpg"), str(tmp_path.resolve() / "photos" / "sub" / "b.png")]


def test_an_ingest_fits_the_whitening_when_due_and_again_when_the_collection_doubled(engine, tmp_path):
    """A whitening method's ingest fits from AUTO_MIN_IMAGES images and refits each time the
    collection has doubled; the whitened rows follow every fit, and each fit says why."""
    from app.collection.whitening import AUTO_MIN_IMAGES
    from app.store.whitening import fitted_images

    method = get_method("global+w")
    embedders = {f"{SMALL.name}/global": Embedder(SMALL, method, pretrained=False)}

    def ingest(n: int, seed: int):
        make_images(tmp_path / f"batch{seed}", [f"{i}.png" for i in range(n)], seed=seed)
        return ingestor(engine, [SMALL], method, embedders=embedders).run(tmp_path)

    def state() -> tuple:
        with engine.connect() as conn:
            return (fitted_images(conn, 1, SMALL.name, "global"),
                    len(stored_vectors(conn, SMALL, "global+w")[0]), len(stored_vectors(conn, SMALL, "global")[0]))

    assert ingest(AUTO_MIN_IMAGES - 1, seed=1).fits == [] and state() == (None, 0, AUTO_MIN_IMAGES - 1)
    first = ingest(1, seed=2).fits
    assert [(f["version"], f["n_images"]) for f in first] == [(1, AUTO_MIN_IMAGES)]
    assert first[0]["reason"].startswith(f"first fit: {AUTO_MIN_IMAGES} images stored")
    assert state() == (AUTO_MIN_IMAGES, AUTO_MIN_IMAGES, AUTO_MIN_IMAGES)
    assert ingest(AUTO_MIN_IMAGES - 1, seed=3).fits == []  # grown, not doubled: new rows take the fit
    assert state() == (AUTO_MIN_IMAGES, 2 * AUTO_MIN_IMAGES - 1, 2 * AUTO_MIN_IMAGES - 1)
    again = ingest(1, seed=4).fits
    assert [(f["version"], f["n_images"]) for f in again] == [(2, 2 * AUTO_MIN_IMAGES)]
    assert again[0]["reason"] == f"the collection grew from {AUTO_MIN_IMAGES} to {2 * AUTO_MIN_IMAGES} images since the last fit"
    assert ingestor(engine, [SMALL], get_method("global"), embedders=embedders).run(tmp_path).fits == []
