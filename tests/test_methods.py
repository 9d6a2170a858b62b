"""Every retrieval method through ingest, search and evaluate against the real database,
on the generated calendar set with real (offline) ImageNet weights."""
import io
import json
import subprocess
import sys

import pytest
from PIL import Image
from sqlalchemy import text

import numpy as np

from app import store
from app.dba import AugmentError, augment, augment_collection
from app.duplicates import find_duplicates
from app.graph import GraphError, build_graph
from app.evaluate import EvaluationError, evaluate
from app.ingest import Ingestor
from app.labels import read_labels
from app.methods import UnknownMethod, get_method
from app.registry import get_model
from app.schema import index_name
from app.search import _through_graph, knn_sql, similar
from app.synth import make_calendar_set
from app.whiten import WhiteningError, whiten_collection
from tests.helpers import make_images

LITE0 = get_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def calendar(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calendar")
    return folder, make_calendar_set(folder)


@pytest.fixture(scope="module")
def embedders():
    return {}


def _ingest(engine, embedders, folder, labels, method):
    return Ingestor(engine, [LITE0], get_method(method), embedders=embedders).run(folder, read_labels(labels))


@pytest.mark.parametrize("name", ["global", "gem", "gem-ms", "rmac", "gem+w", "gem+qe", "gem+w+qe+sift", "rmac+orb",
                                  "verified", "gem+dba", "gem+w+dba+qe+sift", "gem@768", "gem-ms@1024+w+sift"])
def test_method_names_parse(name):
    method = get_method(name)
    assert method.descriptor.name.split("@")[0] in ("global", "gem", "gem-ms", "rmac")
    assert "@" not in name or method.descriptor.longest == int(name.split("@")[1].split("+")[0])


@pytest.mark.parametrize("name", ["sift", "gem+sift+orb", "gem+sift+w", "gem+x", "global; DROP TABLE images", "",
                                  "rmac+dba", "gem+dba+w", "gem@", "gem@abc", "global@512", "gem@99999", "gem@0768",
                                  "gem@768@5", "gem@32"])
def test_bad_method_names_fail(name):
    with pytest.raises(UnknownMethod):
        get_method(name)


@pytest.mark.parametrize("method", ["gem", "gem-ms", "rmac", "gem+qe", "gem+sift", "gem+orb", "gem@256"])
def test_each_method_ingests_searches_and_evaluates(engine, embedders, calendar, method):
    folder, labels = calendar
    report = _ingest(engine, embedders, folder, labels, method)
    assert report.new_images == 18 and not report.failed
    meth = get_method(method)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT count(*), count(DISTINCT image_id) FROM {LITE0.table} "
                                 f"WHERE method = :m"), {"m": meth.raw}).one()
        local = conn.execute(text("SELECT count(*) FROM local_features")).scalar()
    assert rows[1] == 18 and rows[0] == (18 * 14 if meth.descriptor.regions else 18)
    assert local == (18 if meth.local else 0)
    hits = similar(folder / "1.jpg", LITE0.name, k=5, method=method, engine=engine)
    assert hits[0].path.endswith("/1.jpg") and len(hits) == 5
    assert (hits[1].inliers is not None) == bool(meth.local)
    result = evaluate(engine, folder, labels, LITE0, meth, ingest=False)
    assert result.summary.n_queries == 18 and 0.5 < result.summary.map <= 1.0


def test_verification_tells_the_pages_apart_where_the_study_method_fails(engine, embedders, calendar):
    folder, labels = calendar
    for method in ("global", "verified"):
        _ingest(engine, embedders, folder, labels, method)

    def january_first(method):
        hits = similar(folder / "1.jpg", LITE0.name, k=18, method=method, engine=engine)
        return [h.label for h in hits[:9]] == ["january"] * 9

    assert not january_first("global")
    assert january_first("verified")
    baseline = evaluate(engine, folder, labels, LITE0, get_method("global"), ingest=False).summary
    best = evaluate(engine, folder, labels, LITE0, get_method("verified"), ingest=False).summary
    assert best.map > 0.95 and best.map > baseline.map + 0.15


def test_whitening_is_fitted_stored_and_used(engine, embedders, calendar):
    folder, labels = calendar
    _ingest(engine, embedders, folder, labels, "gem")
    with pytest.raises(WhiteningError, match="at least 50"):
        whiten_collection(engine, LITE0, "gem")
    first = whiten_collection(engine, LITE0, "gem", min_images=10)
    again = whiten_collection(engine, LITE0, "gem", min_images=10)
    assert (first["version"], again["version"]) == (1, 2) and first["n_images"] == 18
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'")).scalar() == 18
    hits = similar(folder / "2.jpg", LITE0.name, k=3, method="gem+w", engine=engine)
    assert hits[0].path.endswith("/2.jpg") and hits[0].distance == pytest.approx(0, abs=1e-5)
    # an image ingested after the fit gets its whitened row too
    extra = folder.parent / "extra"
    make_images(extra, ["new.png"], seed=77)
    Ingestor(engine, [LITE0], get_method("gem"), embedders=embedders).run(extra)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'")).scalar() == 19


def test_augment_adds_the_nearest_neighbours_weighted_by_similarity_cubed():
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1], [0, 0.6, 0.8]], np.float32)
    out = augment(vectors, top=1, alpha=3.0)
    expected = vectors[0] + 0.8 ** 3 * vectors[1]  # row 0's nearest other row is row 1 (cosine 0.8)
    assert np.allclose(out[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(augment(vectors, top=0), vectors, atol=1e-6)


def test_dba_rows_are_written_indexed_and_searched(engine, embedders, calendar):
    folder, labels = calendar
    _ingest(engine, embedders, folder, labels, "gem")
    with pytest.raises(AugmentError, match="no \\+dba step"):
        augment_collection(engine, LITE0, get_method("gem+w"))
    with pytest.raises(AugmentError, match="index whiten"):
        augment_collection(engine, LITE0, get_method("gem+w+dba"))
    with pytest.raises(EvaluationError, match="imgsim index dba"):
        evaluate(engine, folder, labels, LITE0, get_method("gem+dba"), ingest=False)
    assert augment_collection(engine, LITE0, get_method("gem+dba"))["n_images"] == 18
    with engine.begin() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+dba'")).scalar() == 18
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text(
            f"EXPLAIN {knn_sql(LITE0, 'gem+dba')}"), {"q": "[" + ",".join(["0.1"] * LITE0.dim) + "]", "k": 3}))
    assert index_name(LITE0.table, "gem+dba") in plan
    hits = similar(folder / "2.jpg", LITE0.name, k=3, method="gem+dba", engine=engine)
    assert hits[0].path.endswith("/2.jpg")
    result = evaluate(engine, folder, labels, LITE0, get_method("gem+dba+qe"), ingest=False)
    assert result.summary.n_queries == 18 and result.summary.map > 0.5
    # an image ingested later gets its augmented row: itself plus its nearest stored neighbours
    extra = folder.parent / "extra-dba"
    make_images(extra, ["new.png"], seed=78)
    Ingestor(engine, [LITE0], get_method("gem"), embedders=embedders).run(extra)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+dba'")).scalar() == 19
        new_id = conn.execute(text("SELECT id FROM images WHERE path LIKE '%extra-dba%'")).scalar()
        ids, vectors = store.stored_vectors(conn, LITE0, "gem")
        _, (augmented,) = store.stored_vectors(conn, LITE0, "gem+dba", [new_id])
    by_id = dict(zip(ids, vectors))
    others = [i for i in ids if i != new_id]
    sims = np.array([float(by_id[new_id] @ by_id[i]) for i in others])
    top = np.argsort(-sims)[:3]
    expected = by_id[new_id] + sum(sims[t] ** 3 * by_id[others[t]] for t in top)
    assert np.allclose(augmented, expected / np.linalg.norm(expected), atol=1e-3)


def test_graph_expansion_adds_the_verified_neighbours_of_verified_candidates():
    score = {1: 40.0, 2: 20.0}  # path weights (40/40)^2 = 1 and (20/40)^2 = 0.25
    graph = {1: {3: 10.0, 2: 5.0, 9: 7.0}, 2: {4: 8.0, 1: 30.0, 3: 60.0}}
    # 3: best single path max(1 x 10, 0.25 x 60); 9 is the query itself
    assert _through_graph(score, graph, query_id=9, among=None) == {1: 47.5, 2: 25.0, 3: 15.0, 4: 2.0}
    assert _through_graph(score, graph, query_id=9, among=[1, 2, 4]) == {1: 47.5, 2: 25.0, 4: 2.0}


def test_match_graph_is_built_incrementally_and_ranks_every_page_first(engine, embedders, calendar):
    folder, labels = calendar
    _ingest(engine, embedders, folder, labels, "gem+sift")
    method = get_method("gem+sift")
    with pytest.raises(GraphError, match="does not verify"):
        build_graph(engine, LITE0, get_method("gem"))
    first = build_graph(engine, LITE0, method)
    assert first["images"] == 18 and first["edges"] > 0
    assert build_graph(engine, LITE0, method)["images"] == 0  # nothing new
    assert build_graph(engine, LITE0, method, rebuild=True)["images"] == 18
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT i.label, n.label, e.score FROM match_graph g JOIN images i ON i.id = g.image_id "
            "CROSS JOIN LATERAL unnest(g.neighbours, g.scores) AS e(id, score) JOIN images n ON n.id = e.id")).all()
    assert len(rows) == first["edges"]
    same = [score for a, b, score in rows if a == b]
    other = [score for a, b, score in rows if a != b]  # the shared layout verifies too, but scores less
    assert len(same) == 18 * 8 and sum(same) / len(same) > 2 * sum(other) / max(1, len(other))
    result = evaluate(engine, folder, labels, LITE0, method, ingest=False)
    perfect = [q for q in result.queries
               if all(h.image_id in result.relevant[q] for h in result.rankings[q][:len(result.relevant[q])])]
    assert len(perfect) == 18, "every query ranks its whole page first"
    hits = similar(folder / "1.jpg", LITE0.name, k=18, method="gem+sift", engine=engine)
    assert all(h.score is not None for h in hits[1:9])


def test_duplicates_groups_copies_of_the_same_image(engine, embedders, tmp_path):
    from skimage import data

    for name in ("coffee", "chelsea", "astronaut", "rocket", "camera"):
        Image.fromarray(getattr(data, name)()).convert("RGB").save(tmp_path / f"{name}.png")
    buf = io.BytesIO()
    Image.open(tmp_path / "coffee.png").resize((300, 200)).save(buf, "JPEG", quality=60)
    (tmp_path / "coffee_copy.jpg").write_bytes(buf.getvalue())
    Ingestor(engine, [LITE0], get_method("gem+sift"), embedders=embedders).run(tmp_path)
    found = find_duplicates(engine, LITE0, get_method("gem+sift"), threshold=0.2)
    names = [sorted(item["path"].rsplit("/", 1)[-1] for item in group) for group in found]
    assert names == [["coffee.png", "coffee_copy.jpg"]]


def test_cli_methods_search_duplicates(database, calendar):
    folder, labels = calendar
    run = lambda *a: subprocess.run([sys.executable, "-m", "app.cli", *map(str, a)], capture_output=True, text=True)
    ingested = run("ingest", folder, "--model", LITE0.name, "--method", "gem+sift", "--labels", labels)
    assert ingested.returncode == 0 and "match graph efficientnet-lite0/gem+sift: rows for 18 images" in ingested.stdout
    hits = json.loads(run("search", folder / "3.jpg", "--model", LITE0.name, "--method", "gem+sift", "-k", "4",
                          "--json").stdout)
    assert hits[0]["path"].endswith("/3.jpg") and all(h["inliers"] is not None for h in hits[1:])
    assert "rows for 0 images" in run("index", "graph", "--model", LITE0.name, "--method", "gem+sift").stdout
    graph = run("index", "graph", "--model", LITE0.name, "--method", "gem+sift", "--rebuild", "-q")
    assert graph.returncode == 0 and "rows for 18 images" in graph.stdout
    assert run("index", "dba", "--model", LITE0.name, "--method", "gem+dba").returncode == 0
    not_verifying = run("index", "graph", "--model", LITE0.name, "--method", "gem")
    assert not_verifying.returncode == 1 and "does not verify" in not_verifying.stderr
    hits = json.loads(run("search", folder / "3.jpg", "--model", LITE0.name, "--method", "gem+sift", "-k", "4",
                          "--json").stdout)
    assert all(h["score"] is not None for h in hits[1:])
    methods = {m["name"] for m in json.loads(run("methods", "--json").stdout)}
    assert {"global", "gem", "gem-ms", "rmac", "verified"} <= methods
    dup = run("duplicates", "--model", LITE0.name, "--method", "gem+sift", "--json")
    assert dup.returncode == 0 and isinstance(json.loads(dup.stdout), list)
    evaluation = json.loads(run("evaluate", folder, "--labels", labels, "--model", LITE0.name, "--method", "gem+sift",
                                "--json").stdout)
    assert {"map", "p_at_1", "p_at_r", "recall_at_1", "n_queries", "model", "method"} <= set(evaluation)
