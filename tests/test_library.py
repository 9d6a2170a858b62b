"""A photo library that changes: files apart from images, copies, moves, deletions, collections
and filters, against the real database (issue 12)."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from sqlalchemy import text

from app import api
from app.describe.embedder import Embedder
from app.describe.methods import get_method
from app.describe.registry import get_model
from app.files.labels import read_labels
from app.files.paths import path_text
from app.store.collections import CollectionError
from tests.helpers import LITE0, count, ingestor, make_images, store_images

GLOBAL = get_method("global")
SMALL = get_model("mobilenetv3small")


@pytest.fixture(scope="module")
def small():
    return {f"{SMALL.name}/global": Embedder(SMALL, GLOBAL, pretrained=False)}


def _ingest(engine, embedders, folder, name="default", **run):
    return ingestor(engine, [SMALL], GLOBAL, name, embedders=embedders, pretrained=False).run(folder, **run)


def _paths(engine, sql="SELECT path FROM files ORDER BY path", **params):
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(sql), params)]


def _search(engine, query, k=20, **options):
    return api.search(query, SMALL.name, k, "global", engine=engine, **options)


def test_a_copy_in_two_folders_keeps_both_paths_and_is_an_exact_duplicate(database, engine, small, tmp_path):
    make_images(tmp_path / "one", ["a.jpg", "b.jpg"], seed=1)
    (tmp_path / "two").mkdir()
    shutil.copy(tmp_path / "one" / "a.jpg", tmp_path / "two" / "a copy.jpg")
    first = _ingest(engine, small, tmp_path / "one")
    second = _ingest(engine, small, tmp_path / "two")
    assert (first.new_images, second.new_images, second.skipped, second.embedded) == (2, 0, 1, {})
    a, copy = str(tmp_path / "one" / "a.jpg"), str(tmp_path / "two" / "a copy.jpg")
    hit = _search(engine, tmp_path / "two" / "a copy.jpg").hits[0]
    assert hit.paths == (a, copy) and hit.path == a and hit.distance == pytest.approx(0, abs=1e-6)
    assert [[item["path"] for item in same] for same in api.exact_copies(engine)] == [[a, copy]]
    assert count(database, "SELECT count(*) FROM images") == 2


def test_a_move_is_recognised_without_embedding_and_found_under_its_new_path_only(engine, small, tmp_path):
    make_images(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg"], seed=2)
    _ingest(engine, small, tmp_path / "lib")
    (tmp_path / "lib" / "moved").mkdir()
    (tmp_path / "lib" / "b.jpg").rename(tmp_path / "lib" / "moved" / "b renamed.jpg")
    report = _ingest(engine, small, tmp_path / "lib", sync=True)
    assert (report.new_images, report.embedded, report.unchanged) == (0, {}, 2)
    assert report.removed == [str(tmp_path / "lib" / "b.jpg")] and report.removed_images == 0
    new = str(tmp_path / "lib" / "moved" / "b renamed.jpg")
    assert new in _paths(engine) and str(tmp_path / "lib" / "b.jpg") not in _paths(engine)
    assert _search(engine, tmp_path / "lib" / "moved" / "b renamed.jpg").hits[0].paths == (new,)


def test_a_deleted_file_is_never_returned_again_and_its_rows_are_gone(database, engine, lite0_embedders, tmp_path):
    folder = tmp_path / "lib"
    make_images(folder, [f"p{i}.jpg" for i in range(6)], seed=3)
    ingestor(engine, [LITE0], "gem+sift", embedders=lite0_embedders, graph=True).run(folder)
    with engine.connect() as conn:
        gone = conn.execute(text("SELECT image_id FROM files WHERE path LIKE '%/p2.jpg'")).scalar()
    (folder / "p2.jpg").unlink()
    report = ingestor(engine, [LITE0], "gem+sift", embedders=lite0_embedders).run(folder, sync=True)
    assert (len(report.removed), report.removed_images) == (1, 1)
    for table, column in (("images", "id"), (LITE0.table, "image_id"), ("local_features", "image_id"),
                          ("match_graph", "image_id"), ("files", "image_id")):
        assert count(database, f"SELECT count(*) FROM {table} WHERE {column} = {gone}") == 0, table
    for query in (folder / "p0.jpg", folder / "p3.jpg"):
        hits = api.search(query, LITE0.name, 10, "gem+sift", engine=engine).hits
        assert len(hits) == 5 and gone not in {h.image_id for h in hits}
    again = ingestor(engine, [LITE0], "gem+sift", embedders=lite0_embedders).run(folder, sync=True)
    assert (again.removed, again.new_images, again.unchanged) == ([], 0, 5)


def test_a_changed_file_is_embedded_again_and_its_old_content_deleted(database, engine, small, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg"], seed=4)
    _ingest(engine, small, tmp_path)
    with engine.connect() as conn:
        old = conn.execute(text("SELECT image_id FROM files WHERE path LIKE '%/a.jpg'")).scalar()
    make_images(tmp_path, ["a.jpg"], seed=40)  # new content at the same path
    report = _ingest(engine, small, tmp_path)
    assert (report.new_images, report.unchanged, report.embedded) == (1, 1, {SMALL.name: 1})
    assert count(database, f"SELECT count(*) FROM images WHERE id = {old}") == 0
    assert count(database, f"SELECT count(*) FROM {SMALL.table} WHERE image_id = {old}") == 0


def test_remove_forgets_named_files_and_folders_even_when_they_no_longer_exist(engine, small, tmp_path):
    make_images(tmp_path / "lib", ["a.jpg", "sub/b.jpg", "sub/c.jpg", "subway/d.jpg"], seed=5)
    _ingest(engine, small, tmp_path / "lib")
    shutil.rmtree(tmp_path / "lib" / "sub")
    result = api.remove([tmp_path / "lib" / "sub", tmp_path / "lib" / "nothing.jpg"], engine=engine)
    assert result["removed"] == [str(tmp_path / "lib" / "sub" / "b.jpg"), str(tmp_path / "lib" / "sub" / "c.jpg")]
    assert result["removed_images"] == 2 and result["unmatched"] == [str(tmp_path / "lib" / "nothing.jpg")]
    assert _paths(engine) == [str(tmp_path / "lib" / "a.jpg"), str(tmp_path / "lib" / "subway" / "d.jpg")]


def test_collections_keep_the_same_file_apart(engine, small, tmp_path):
    make_images(tmp_path / "mine", ["a.jpg", "b.jpg", "c.jpg"], seed=6)
    make_images(tmp_path / "catalogue", ["x.jpg", "y.jpg"], seed=7)
    shutil.copy(tmp_path / "mine" / "a.jpg", tmp_path / "catalogue" / "a.jpg")
    _ingest(engine, small, tmp_path / "mine")
    _ingest(engine, small, tmp_path / "catalogue", name="catalogue")
    mine = _search(engine, tmp_path / "mine" / "a.jpg")
    theirs = _search(engine, tmp_path / "mine" / "a.jpg", collection="catalogue")
    assert {p for h in mine.hits for p in h.paths} == {str(tmp_path / "mine" / n) for n in ("a.jpg", "b.jpg", "c.jpg")}
    assert {p for h in theirs.hits for p in h.paths} == {str(tmp_path / "catalogue" / n)
                                                         for n in ("a.jpg", "x.jpg", "y.jpg")}
    assert theirs.collection == "catalogue" and theirs.hits[0].distance == pytest.approx(0, abs=1e-6)
    listed = {r["name"]: (r["files"], r["images"]) for r in api.collections(engine)}
    assert listed == {"default": (3, 3), "catalogue": (3, 3)}
    with pytest.raises(CollectionError, match="no collection named 'nope'"):
        _search(engine, tmp_path / "mine" / "a.jpg", collection="nope")
    assert api.drop_collection("catalogue", engine) == {"name": "catalogue", "files": 3, "images": 3}
    assert {r["name"] for r in api.collections(engine)} == {"default"}


def test_filters_return_k_rows_through_the_hnsw_index(engine):
    """1,000 images; the 12 labelled 'rare' and the 12 under /photos/rare/ are the farthest from the
    query, so a plain index scan (ef_search 400) would find none of them."""
    from app.store.knn import knn_sql, search_settings
    from app.store.scope import Scope

    rng = np.random.default_rng(8)
    direction = rng.normal(size=SMALL.dim).astype(np.float32)
    vectors = direction + rng.normal(size=(1000, SMALL.dim)).astype(np.float32) * np.linspace(0.2, 3.0, 1000)[:, None]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"sha256": f"{i:064x}", "width": 4, "height": 4,
             "path": f"/photos/rare/{i}.jpg" if 976 <= i < 988 else f"/photos/common/{i}.jpg",
             "label": "rare" if i >= 988 else "common"} for i in range(1000)]
    from app.store.embeddings import ensure_index, write_embeddings

    with engine.begin() as conn:
        ids = store_images(conn, rows)
        write_embeddings(conn, SMALL, "global", [(ids[r["sha256"]], 0, v) for r, v in zip(rows, vectors)])
        ensure_index(conn, SMALL, "global")
        conn.exec_driver_sql("ANALYZE")
    query = direction / np.linalg.norm(direction)
    rare = api.search(ids[rows[0]["sha256"]], SMALL.name, 10, "global", label="rare", engine=engine).hits
    assert len(rare) == 10 and {h.label for h in rare} == {"rare"}
    assert [h.distance for h in rare] == sorted(h.distance for h in rare)
    under = api.search(ids[rows[0]["sha256"]], SMALL.name, 10, "global", under="/photos/rare", engine=engine).hits
    assert len(under) == 10 and all(h.path.startswith("/photos/rare/") for h in under)
    assert not api.search(ids[rows[0]["sha256"]], SMALL.name, 5, "global", under="/photos/rar", engine=engine).hits
    with engine.begin() as conn, search_settings(conn, 10):  # what every search runs with
        sql, params = knn_sql(SMALL, "global", Scope.of(1, label="rare", under="/photos/rare"))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), {"q": query, "k": 10, **params}))
    assert f"ix_{SMALL.table}_global_hnsw" in plan and "Index Scan" in plan, plan


def test_evaluation_is_over_files_and_reports_one_content_in_two_groups(database, engine, small, tmp_path):
    folder = tmp_path / "set"
    make_images(folder, [f"{g}{i}.jpg" for g in "ab" for i in range(3)], seed=9)
    shutil.copy(folder / "a0.jpg", folder / "a0 again.jpg")  # a copy in its own group: a relevant file
    shutil.copy(folder / "b0.jpg", folder / "b0 in a.jpg")  # a copy labelled with the other group: a defect
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,group\n" + "".join(f"{g}{i}.jpg,{g}\n" for g in "ab" for i in range(3))
                      + "a0 again.jpg,a\nb0 in a.jpg,a\n")
    _ingest(engine, small, folder, name=f"{tmp_path.name}/set", labels=read_labels(labels))
    result = api.evaluate(folder, labels, SMALL.name, GLOBAL, engine=engine, ingest=False)
    assert result.collection == f"{tmp_path.name}/set" and result.summary.n_queries == 8 and result.n_database == 8
    assert result.conflicts == [["b0 in a.jpg", "b0.jpg"]]
    assert result.rankings["a0.jpg"][0].path == path_text(folder / "a0 again.jpg")  # its copy first
    assert path_text(folder / "a0.jpg") not in {h.path for h in result.rankings["a0.jpg"]}
    assert {r["name"] for r in api.collections(engine)} == {"default", f"{tmp_path.name}/set"}  # nothing went to default
    assert count(database, "SELECT count(*) FROM files f JOIN collections c "
                                                     "ON c.id = f.collection_id WHERE c.name = 'default'") == 0


def test_two_syncs_of_overlapping_folders_leave_one_row_per_path(database, engine, small, tmp_path):
    make_images(tmp_path / "lib", [f"{d}/p{i}.jpg" for d in ("x", "y") for i in range(6)], seed=10)
    (tmp_path / "lib" / "x" / "p0.jpg").rename(tmp_path / "lib" / "p0 moved.jpg")
    errors = []

    def sync(folder):
        try:
            _ingest(engine, small, folder, sync=True)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(f,)) for f in (tmp_path / "lib", tmp_path / "lib" / "x")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    paths = _paths(engine)
    assert len(paths) == len(set(paths)) == 12 and str(tmp_path / "lib" / "p0 moved.jpg") in paths
    assert count(database, "SELECT count(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id)") == 0


def test_a_vanished_file_and_a_path_too_long_to_store_are_recorded_failures(engine, small, tmp_path, monkeypatch):
    from app.files import images as files_images
    from app.ingestion import reader

    make_images(tmp_path, ["ok.jpg"], seed=11)
    deep = tmp_path
    for n in range(9):
        deep = deep / (f"{n}" * 240)
    make_images(deep, ["far.jpg"], seed=12)
    listed = files_images.find_images(tmp_path)
    vanished = files_images.Candidate(tmp_path / "vanished.jpg")  # listed, then deleted before it is read
    monkeypatch.setattr(reader, "find_images", lambda root: [*listed, vanished])
    report = _ingest(engine, small, tmp_path)
    reasons = {f.path.name: f.reason for f in report.failed}
    assert reasons["vanished.jpg"] == "cannot read: No such file or directory"
    assert reasons["far.jpg"].startswith("path too long to store (")
    assert report.new_images == 1 and {f["path"][-12:] for f in api.failures(engine)} >= {"vanished.jpg"}


def test_db_check_finds_and_repairs_images_without_files(database, engine, small, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"], seed=13)
    _ingest(engine, small, tmp_path)
    with engine.begin() as conn:  # a hand-made change: the code never leaves this
        conn.execute(text("DELETE FROM files WHERE path = :p"), {"p": str(tmp_path / "b.jpg")})
    assert [(f["kind"], f["count"]) for f in api.check(engine=engine)] == [("orphans", 1)]
    assert [f["repaired"] for f in api.check(repair=True, engine=engine)] == [True]
    assert api.check(engine=engine) == []
    assert count(database, "SELECT count(*) FROM images") == 2
    assert count(database, f"SELECT count(*) FROM {SMALL.table}") == 2
