"""Collection jobs against the real database: whitening, DBA and the match graph, and the rows
ingest keeps complete for images added after them."""
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from app.collection.dba import AugmentError, augment_collection
from app.collection.graph import GraphError, build_graph
from app.collection.whitening import WhiteningError, whiten_collection
from app.describe.methods import get_method
from app.evaluation.evaluate import EvaluationError, evaluate
from app.files.labels import read_labels
from app.retrieval.query import stored_query
from app.retrieval.rerank import direct_scores
from app.retrieval.search import similar
from app.store.ddl import index_name
from app.store.embeddings import stored_vectors
from app.store.graph import load_graph
from app.store.knn import knn_sql
from app.store.scope import Scope
from tests.helpers import LITE0, ingest_lite0, ingestor, make_images, store_random_vectors
from tests.helpers import collection as DEFAULT


def test_whitening_is_fitted_stored_and_used(engine, lite0_embedders, calendar):
    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem")
    with pytest.raises(WhiteningError, match="at least 50"):
        whiten_collection(engine, DEFAULT(engine), LITE0, "gem")
    first = whiten_collection(engine, DEFAULT(engine), LITE0, "gem", min_images=10)
    again = whiten_collection(engine, DEFAULT(engine), LITE0, "gem", min_images=10)
    assert (first["version"], again["version"]) == (1, 2) and first["n_images"] == 18
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'")).scalar() == 18
    hits = similar(folder / "2.jpg", LITE0.name, k=3, method="gem+w", engine=engine).hits
    assert hits[0].path.endswith("/2.jpg") and hits[0].distance == pytest.approx(0, abs=1e-5)
    # an image ingested after the fit gets its whitened row too
    extra = folder.parent / "extra"
    make_images(extra, ["new.png"], seed=77)
    ingestor(engine, [LITE0], get_method("gem"), embedders=lite0_embedders).run(extra)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'")).scalar() == 19


def test_a_refit_rewrites_every_whitened_row_with_the_new_fit(engine):
    from app.describe.vectors import apply_whitening
    from app.store.whitening import load_whitening

    ids, _ = store_random_vectors(LITE0, "gem", 60)
    whiten_collection(engine, DEFAULT(engine), LITE0, "gem")
    whiten_collection(engine, DEFAULT(engine), LITE0, "gem", fit_ids=ids[:50])  # another fit: every +w row must follow it
    with engine.connect() as conn:
        version, mean, projection = load_whitening(conn, 1, LITE0.name, "gem")
        raw_ids, raw = stored_vectors(conn, LITE0, "gem")
        whitened_ids, whitened = stored_vectors(conn, LITE0, "gem+w")
    assert version == 2 and raw_ids == whitened_ids == ids
    np.testing.assert_allclose(whitened, apply_whitening(raw, mean, projection), atol=1e-5)


def test_dba_rows_are_written_indexed_and_searched(engine, lite0_embedders, calendar):
    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem")
    with pytest.raises(AugmentError, match="no \\+dba step"):
        augment_collection(engine, DEFAULT(engine), LITE0, get_method("gem+w"))
    with pytest.raises(AugmentError, match="0 images stored") as no_whitening:
        augment_collection(engine, DEFAULT(engine), LITE0, get_method("gem+w+dba"))
    assert no_whitening.value.needs_whitening
    with pytest.raises(EvaluationError, match="no stored query or database images") as not_augmented:
        evaluate(engine, DEFAULT(engine), folder, labels, LITE0, get_method("gem+dba"))
    assert not_augmented.value.missing_step == "dba"
    assert augment_collection(engine, DEFAULT(engine), LITE0, get_method("gem+dba"))["n_images"] == 18
    with engine.begin() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+dba'")).scalar() == 18
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        sql, params = knn_sql(LITE0, "gem+dba", Scope(1))
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}"),
                                                     {"q": np.full(LITE0.dim, 0.1, np.float32), "k": 3, **params}))
    assert index_name(LITE0.table, "gem+dba") in plan
    hits = similar(folder / "2.jpg", LITE0.name, k=3, method="gem+dba", engine=engine).hits
    assert hits[0].path.endswith("/2.jpg")
    result = evaluate(engine, DEFAULT(engine), folder, labels, LITE0, get_method("gem+dba+qe"))
    assert result.summary.n_queries == 18 and result.summary.map > 0.5
    # an image ingested later gets its augmented row: itself plus its nearest stored neighbours
    extra = folder.parent / "extra-dba"
    make_images(extra, ["new.png"], seed=78)
    ingestor(engine, [LITE0], get_method("gem"), embedders=lite0_embedders).run(extra)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+dba'")).scalar() == 19
        new_id = conn.execute(text("SELECT image_id FROM files WHERE path LIKE '%extra-dba%'")).scalar()
        ids, vectors = stored_vectors(conn, LITE0, "gem")
        _, (augmented,) = stored_vectors(conn, LITE0, "gem+dba", [new_id])
    by_id = dict(zip(ids, vectors))
    others = [i for i in ids if i != new_id]
    sims = np.array([float(by_id[new_id] @ by_id[i]) for i in others])
    top = np.argsort(-sims)[:3]
    expected = by_id[new_id] + sum(sims[t] ** 3 * by_id[others[t]] for t in top)
    assert np.allclose(augmented, expected / np.linalg.norm(expected), atol=1e-3)


def test_match_graph_is_built_incrementally_and_ranks_every_page_first(engine, lite0_embedders, calendar):
    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem+sift")
    method = get_method("gem+sift")
    with pytest.raises(GraphError, match="does not verify"):
        build_graph(engine, DEFAULT(engine), LITE0, get_method("gem"))
    first = build_graph(engine, DEFAULT(engine), LITE0, method)
    assert first["images"] == 18 and first["edges"] > 0
    assert build_graph(engine, DEFAULT(engine), LITE0, method)["images"] == 0  # nothing new
    assert build_graph(engine, DEFAULT(engine), LITE0, method, rebuild=True)["images"] == 18
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT i.label, n.label, e.score FROM match_graph g JOIN files i ON i.image_id = g.image_id "
            "CROSS JOIN LATERAL unnest(g.neighbours, g.scores) AS e(id, score) JOIN files n ON n.image_id = e.id")).all()
    assert len(rows) == first["edges"]
    stored, confident = _own_rows(engine), _own_rows(engine, "confidences")
    with engine.connect() as conn:  # rows the job computed sharing products = rows of queries run alone
        for image_id in stored:
            alone, sure = direct_scores(conn, LITE0, method, stored_query(conn, image_id, LITE0, method),
                                        Scope(DEFAULT(engine).id))
            assert alone.keys() == stored[image_id].keys() == sure.keys()
            assert all(abs(alone[n] - stored[image_id][n]) < 1e-4 for n in alone)
            assert all(abs(sure[n] - confident[image_id][n]) < 1e-4 for n in sure)
    same = [score for a, b, score in rows if a == b]
    other = [score for a, b, score in rows if a != b]  # the shared layout verifies too, but scores less
    assert len(same) == 18 * 8 and sum(same) / len(same) > 2 * sum(other) / max(1, len(other))
    result = evaluate(engine, DEFAULT(engine), folder, labels, LITE0, method)
    perfect = [q for q in result.queries
               if all(h.path in result.relevant[q] for h in result.rankings[q][:len(result.relevant[q])])]
    assert len(perfect) == result.perfect_queries() == 18, "every query ranks its whole page first"
    hits = similar(folder / "1.jpg", LITE0.name, k=18, method="gem+sift", engine=engine).hits
    assert all(h.score is not None for h in hits[1:9])


def test_rows_computed_by_worker_processes_are_the_rows_computed_here(engine, lite0_embedders, calendar,
                                                                     monkeypatch):
    """The match-graph workers (fresh processes, a contiguous slice of the images each, one
    verification thread each) give the rows this process gives verifying in two threads; a
    worker that fails fails the job in one line."""
    from sqlalchemy import create_engine

    from app.collection.rows import WorkerError, local_rows, process_rows
    from app.config import get_settings
    from app.store.graph import verifiable_ids

    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem+sift")
    method, collection = get_method("gem+sift"), DEFAULT(engine)
    with engine.connect() as conn:
        ids = verifiable_ids(conn, LITE0, method.stored, "sift", collection.id)
    monkeypatch.setenv("IMGSIM_GRAPH_WORKERS", "1")
    monkeypatch.setenv("IMGSIM_VERIFY_THREADS", "2")
    get_settings.cache_clear()
    here = {i: (s, c) for rows in local_rows(engine, collection.id, LITE0, method, ids) for i, s, c in rows}
    there = {i: (s, c) for rows in process_rows(engine, collection.id, LITE0, method, ids, workers=2) for i, s, c in rows}
    assert len(here) == 18 and sum(len(s) for s, _ in here.values()) >= 18 * 8
    assert there == here
    monkeypatch.setenv("IMGSIM_RETRY_SECONDS", "0")
    elsewhere = create_engine(engine.url.set(database="no_such_database"))
    with pytest.raises(WorkerError, match="worker stopped .*no_such_database") as failed:
        list(process_rows(elsewhere, collection.id, LITE0, method, ids, workers=2))
    assert "\n" not in str(failed.value)


def test_an_edge_is_read_from_both_sides_at_its_better_score(engine, lite0_embedders, calendar, tmp_path):
    """Images added later appear among the older images' neighbours without a rebuild: each
    edge is stored once, in the row of the image that verified it, and read from both sides at
    the better of its scores where both rows hold it; same-page edges come out as a full build
    gives them (every photo of a page verifies the 8 others)."""
    folder, labels = calendar
    part = tmp_path / "photos"
    part.mkdir()
    names = sorted(p.name for p in folder.glob("*.jpg"))
    for name in names[::2]:
        (part / name).write_bytes((folder / name).read_bytes())
    method, pages = get_method("gem+sift"), read_labels(labels)
    first = ingestor(engine, [LITE0], method, embedders=lite0_embedders, graph=True).run(part, pages)
    for name in names[1::2]:
        (part / name).write_bytes((folder / name).read_bytes())
    second = ingestor(engine, [LITE0], method, embedders=lite0_embedders, graph=True).run(part, pages)
    assert first.graph[0]["images"] == second.graph[0]["images"] == 9
    with engine.connect() as conn:
        labels_by_id = dict(conn.execute(text("SELECT image_id, label FROM files")).all())
        rows = load_graph(conn, LITE0.name, "sift", list(labels_by_id))
    old, stored = _ids_of(engine, names[::2]), _own_rows(engine)
    assert any(new not in stored[o] and new in rows[o] for o in old for new in set(rows) - old)
    both = [(a, b) for a in stored for b in stored[a] if a in stored[b]]
    assert any(stored[a][b] != pytest.approx(stored[b][a]) for a, b in both)  # the sides weigh a pair apart
    for a, row in stored.items():
        for b, score in row.items():
            assert rows[b][a] == rows[a][b] == pytest.approx(max(score, stored[b].get(a, score)))
    same_page = sum(labels_by_id[a] == labels_by_id[b] and a != b for a, row in rows.items() for b in row)
    assert same_page == 18 * 8


def test_a_stored_image_is_answered_from_its_current_row_as_verification_answers_it(engine, lite0_embedders,
                                                                                     calendar):
    """A search for a stored image of a freshly built graph takes its verified neighbours from
    its row: the same hits, order, scores and (for those shown) inliers as verifying its
    shortlist again (a filtered search of the same images does that); a row built before the
    whitening its vectors come from was refitted is not used."""
    from app.retrieval.search import rank
    from app.store.graph import current_row
    from app.store.whitening import save_whitening

    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem+sift")
    method, collection = get_method("gem+sift"), DEFAULT(engine)
    build_graph(engine, collection, LITE0, method)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT image_id FROM match_graph ORDER BY image_id"))]
        whole, every = Scope(collection.id), Scope.of(collection.id, ids)
        assert not whole.filtered and every.filtered
        for image_id in ids:
            query = stored_query(conn, image_id, LITE0, method)
            fast, slow = (rank(conn, LITE0, method, query, 12, scope) for scope in (whole, every))
            assert [h.image_id for h in fast] == [h.image_id for h in slow]
            assert [h.score is None for h in fast] == [h.score is None for h in slow]
            assert [h.score or 0 for h in fast] == pytest.approx([h.score or 0 for h in slow], rel=1e-5)
            assert [h.inliers for h in fast if h.score] == [h.inliers for h in slow if h.score]
        assert {h.label for h in fast[:9]} == {fast[0].label}  # itself, then its page's eight other photos
        assert current_row(conn, LITE0.name, "sift", ids[0], "gem", collection.id, None) is not None
        assert current_row(conn, LITE0.name, "sift", ids[0], "gem+w", collection.id, "gem") is None  # other vectors
    with engine.begin() as conn:  # the row is built from gem+w now, then the whitening is refitted
        conn.execute(text("UPDATE match_graph SET shortlist = 'gem+w'"))
        save_whitening(conn, collection.id, LITE0.name, "gem", 18, np.zeros(LITE0.dim), np.eye(LITE0.dim))
    with engine.connect() as conn:
        assert current_row(conn, LITE0.name, "sift", ids[0], "gem+w", collection.id, "gem") is None


def test_a_stored_image_finds_the_images_whose_rows_list_it(engine, lite0_embedders, calendar):
    """A pair stored only in the other image's row (its shortlist held the pair, the query's
    did not) is still a verified neighbour of the query, with its inliers."""
    from app.retrieval.search import rank
    from app.store.graph import write_graph

    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "gem+sift")
    method, collection = get_method("gem+sift"), DEFAULT(engine)
    build_graph(engine, collection, LITE0, method)
    rows = _own_rows(engine)
    query = min(rows)
    dropped = {n for n in rows[query] if query in rows[n]}
    assert dropped
    with engine.begin() as conn:
        write_graph(conn, LITE0.name, "sift", [(query, {n: s for n, s in rows[query].items() if n not in dropped},
                                                 None)], method.stored)
    with engine.connect() as conn:
        hits = rank(conn, LITE0, method, stored_query(conn, query, LITE0, method), 18, Scope(collection.id))
    found = {h.image_id: h for h in hits}
    assert all(found[n].score is not None and found[n].inliers >= 10 for n in dropped)


def _own_rows(engine, values: str = "scores") -> dict[int, dict[int, float]]:
    """The stored rows, each as the job wrote it (the edges its image verified, with their
    ``values``: scores or confidences)."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT image_id, neighbours, {values} FROM match_graph")).all()
    return {i: dict(zip(n, s)) for i, n, s in rows}


def _ids_of(engine, names: list[str]) -> set[int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT image_id, path FROM files")).all()
    return {i for i, path in rows if path.rsplit("/", 1)[-1] in names}


def test_a_photo_stored_turned_is_verified_through_the_turns_of_the_query(engine, lite0_embedders, calendar,
                                                                            tmp_path, monkeypatch):
    """Ingest stores every image's vectors at the other quarter turns. A January photo stored
    turned by 90 degrees is too far from an upright January photo's vector to enter its
    shortlist (cut to 2 here, among 9 upright February look-alikes); one of the query's turns
    brings it in and verification (which does not depend on the turn) finds it: in a search
    of a new photo, and in the match graph's rows. Whitened, the turned vectors follow the fit."""
    from PIL import Image

    import app.retrieval.rerank as rerank
    import app.retrieval.search as search
    import app.retrieval.shortlist as shortlist
    from app.describe.vectors import apply_whitening
    from app.retrieval.query import stored_turned
    from app.retrieval.shortlist import first_stage
    from app.store.turned import load_turned
    from app.store.whitening import load_whitening

    folder, labels = calendar
    part = tmp_path / "photos"
    part.mkdir()
    for n in range(10, 19):  # February
        (part / f"{n}.jpg").write_bytes((folder / f"{n}.jpg").read_bytes())
    (part / "3.jpg").write_bytes((folder / "3.jpg").read_bytes())  # January, upright
    Image.open(folder / "2.jpg").transpose(Image.Transpose.ROTATE_90).save(part / "turned.jpg", quality=95)
    monkeypatch.setattr(rerank, "SHORTLIST", 2)
    monkeypatch.setattr(search, "SHORTLIST", 2)
    method = get_method("gem+sift")
    ingestor(engine, [LITE0], method, embedders=lite0_embedders, graph=True).run(part)
    turned, upright = (_ids_of(engine, [name]).pop() for name in ("turned.jpg", "3.jpg"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM turned_vectors")).scalar() == 11
        assert turned not in {h.image_id for h in first_stage(conn, LITE0, method, stored_query(
            conn, upright, LITE0, method).vectors, 2, Scope(DEFAULT(engine).id))}
        edges = load_graph(conn, LITE0.name, "sift", [turned, upright])
    assert upright in edges[turned] and turned in edges[upright]

    def verified_in_new_photo_search():  # inliers: verified itself, not reached through the graph
        hits = similar(folder / "1.jpg", LITE0.name, k=3, method="gem+sift", engine=engine).hits
        return any(h.path.endswith("turned.jpg") and (h.inliers or 0) >= rerank.MIN_INLIERS for h in hits)

    assert verified_in_new_photo_search()
    monkeypatch.setattr(shortlist, "TURNED_TOP", 0)
    assert not verified_in_new_photo_search()

    whiten_collection(engine, DEFAULT(engine), LITE0, "gem", min_images=10)
    with engine.connect() as conn:
        _, mean, projection = load_whitening(conn, DEFAULT(engine).id, LITE0.name, "gem")
        raw = load_turned(conn, LITE0.name, "gem", LITE0.dim, turned)[1]
        whitened = stored_turned(conn, turned, LITE0, get_method("gem+w+sift"))
    assert np.allclose(whitened, apply_whitening(raw, mean, projection), atol=1e-6)


def test_db_check_describes_turned_the_images_stored_without_turned_vectors(engine, lite0_embedders, tmp_path):
    """Images stored before a verifying method described images turned are found by `db check`
    and described from their files by `--repair`, as ingest describes them; an image whose file
    is gone is left (and still reported), the others are done."""
    from app import api
    from app.store.turned import load_turned

    folder = tmp_path / "photos"
    make_images(folder, [f"{i}.jpg" for i in range(6)], seed=41)
    ingestor(engine, [LITE0], get_method("gem+sift"), embedders=lite0_embedders, graph=False).run(folder)
    with engine.begin() as conn:
        ids = sorted(r[0] for r in conn.execute(text("SELECT image_id FROM turned_vectors")))
        before = {i: load_turned(conn, LITE0.name, "gem", LITE0.dim, i)[1] for i in ids}
        conn.execute(text("DELETE FROM turned_vectors WHERE image_id = ANY(:ids)"), {"ids": ids[:4]})
        gone = conn.execute(text("SELECT path FROM files WHERE image_id = :i"), {"i": ids[0]}).scalar()
    assert len(ids) == 6
    found = [(f["kind"], f["method"], f["count"]) for f in api.check() if f["kind"] == "turns"]
    assert found == [("turns", "gem", 4)]
    Path(gone).unlink()
    api.check(repair=True)
    assert [(f["kind"], f["count"]) for f in api.check() if f["kind"] == "turns"] == [("turns", 1)]
    with engine.connect() as conn:
        for i in ids[1:]:
            assert np.allclose(load_turned(conn, LITE0.name, "gem", LITE0.dim, i)[1], before[i], atol=2e-3)
