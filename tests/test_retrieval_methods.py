"""Every retrieval method through ingest, search and evaluate against the real database,
on the generated calendar set with real (offline) ImageNet weights."""
import io

import pytest
from PIL import Image
from sqlalchemy import text

from app.describe.methods import get_method
from app.evaluation.evaluate import evaluate
from app.retrieval.duplicates import find_duplicates
from app.retrieval.search import similar
from app.store.scope import Scope
from tests.helpers import LITE0, collection, ingest_lite0, ingestor


# mAP on the generated calendar set (18 photos, two pages), measured on 2026-11-30 (AMD EPYC);
# a change of a method's rules that moves one of these by more than 0.015 is a change to explain.
PINNED_MAP = {"gem": 0.940, "gem-ms": 0.957, "rmac": 0.956, "gem+qe": 0.972, "gem+sift": 0.999, "gem+orb": 0.996,
              "gem@256": 0.939}


@pytest.mark.parametrize("method", list(PINNED_MAP))
def test_each_method_ingests_searches_and_evaluates(engine, lite0_embedders, calendar, method):
    folder, labels = calendar
    report = ingest_lite0(engine, lite0_embedders, folder, labels, method)
    assert report.new_images == 18 and not report.failed
    meth = get_method(method)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT count(*), count(DISTINCT image_id) FROM {LITE0.table} "
                                 f"WHERE method = :m"), {"m": meth.raw}).one()
        local = conn.execute(text("SELECT count(*) FROM local_features")).scalar()
    assert rows[1] == 18 and rows[0] == (18 * 14 if meth.descriptor.regions else 18)
    assert local == (18 if meth.local else 0)
    hits = similar(folder / "1.jpg", LITE0.name, k=5, method=method, engine=engine).hits
    assert hits[0].path.endswith("/1.jpg") and len(hits) == 5
    assert (hits[1].inliers is not None) == bool(meth.local)
    result = evaluate(engine, collection(engine), folder, labels, LITE0, meth)
    assert result.summary.n_queries == 18 and result.summary.p_at_1 == 1.0
    assert result.summary.map == pytest.approx(PINNED_MAP[method], abs=0.015)


def test_verification_tells_the_pages_apart_where_the_study_method_fails(engine, lite0_embedders, calendar):
    folder, labels = calendar
    for method in ("global", "verified"):
        ingest_lite0(engine, lite0_embedders, folder, labels, method)

    def january_first(method):
        hits = similar(folder / "1.jpg", LITE0.name, k=18, method=method, engine=engine).hits
        return [h.label for h in hits[:9]] == ["january"] * 9

    assert not january_first("global")
    assert january_first("verified")
    baseline = evaluate(engine, collection(engine), folder, labels, LITE0, get_method("global")).summary
    best = evaluate(engine, collection(engine), folder, labels, LITE0, get_method("verified")).summary
    assert best.map > 0.95 and best.map > baseline.map + 0.15


def test_duplicates_groups_copies_of_the_same_image(engine, lite0_embedders, tmp_path):
    from skimage import data

    for name in ("coffee", "chelsea", "astronaut", "rocket", "camera"):
        Image.fromarray(getattr(data, name)()).convert("RGB").save(tmp_path / f"{name}.png")
    buf = io.BytesIO()
    Image.open(tmp_path / "coffee.png").resize((300, 200)).save(buf, "JPEG", quality=60)
    (tmp_path / "coffee_copy.jpg").write_bytes(buf.getvalue())
    ingestor(engine, [LITE0], get_method("gem+sift"), embedders=lite0_embedders).run(tmp_path)
    found = find_duplicates(engine, 1, LITE0, get_method("gem+sift"), threshold=0.2)
    names = [sorted(item["path"].rsplit("/", 1)[-1] for item in group) for group in found]
    assert names == [["coffee.png", "coffee_copy.jpg"]]
    assert find_duplicates(engine, 1, LITE0, get_method("gem+sift"), threshold=0.0) == []  # the copy is not exact
    # every pair is within distance 2: unverified, all six are one group; verified, only the copy pairs
    assert [len(g) for g in find_duplicates(engine, 1, LITE0, get_method("gem"), threshold=2.0)] == [6]
    loose = find_duplicates(engine, 1, LITE0, get_method("gem+sift"), threshold=2.0)
    assert [sorted(item["path"].rsplit("/", 1)[-1] for item in group) for group in loose] == names


def test_without_a_graph_a_verified_search_expands_once_through_its_best_match(engine, lite0_embedders, calendar,
                                                                               monkeypatch):
    """Images the first stage missed are verified through the best match's own neighbours."""
    from app.files.labels import read_labels
    from app.retrieval import rerank
    from app.retrieval.query import resolve_query
    from app.retrieval.shortlist import first_stage

    folder, labels = calendar
    method = get_method("gem+sift")
    ingestor(engine, [LITE0], method, embedders=lite0_embedders, graph=False).run(folder, read_labels(labels))
    monkeypatch.setattr(rerank, "SHORTLIST", 8)  # the expansion's shortlist: 8 of the best match's nearest
    with engine.connect() as conn:
        query = resolve_query(conn, folder / "1.jpg", LITE0, method, 1)
        shortlist = first_stage(conn, LITE0, method, query.vectors, 4, Scope(1))  # the query and its 3 nearest
        ranked = rerank.rerank(conn, LITE0, method, query, shortlist, Scope(1))
    verified = [h for h in ranked if h.score is not None]
    first = {h.image_id for h in shortlist}
    reached = [h for h in verified if h.image_id not in first]
    assert any(h.label == "january" for h in reached), "the best match's own neighbours were not verified"
    assert ranked[0].image_id in first and ranked[1].label == "january"
