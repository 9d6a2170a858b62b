"""evaluate/compare against the real database; cross-checked with a brute-force numpy ranking."""

from pathlib import Path

import pytest
from sqlalchemy import text

from app import api
from app.describe.embedder import Embedder
from app.describe.methods import get_method
from app.describe.registry import get_model
from app.evaluation.evaluate import evaluate
from app.evaluation.metrics import summarize
from app.evaluation.report import write_contact_sheet, write_html
from app.files.labels import read_labels
from app.store.embeddings import stored_vectors
from tests.helpers import collection, ingestor, make_images

GLOBAL = get_method("global")
SMALL = get_model("mobilenetv3small")


@pytest.fixture(scope="module")
def embedders():
    return {f"{SMALL.name}/global": Embedder(SMALL, GLOBAL, pretrained=False)}


@pytest.fixture
def labelled(tmp_path):
    names = [f"img{i:02d}.png" for i in range(12)]
    make_images(tmp_path / "photos", names, seed=3)
    csv = tmp_path / "labels.csv"
    roles = ["query" if i % 4 == 0 else "database" if i % 4 == 1 else "both" for i in range(12)]
    csv.write_text("filename,group,role\n" + "".join(f"{n},g{i % 3},{r}\n" for i, (n, r) in enumerate(zip(names, roles))))
    return tmp_path / "photos", csv, names, roles


def _brute_force(engine, names, roles, groups, folder):
    with engine.connect() as conn:
        ids_list, vectors = stored_vectors(conn, SMALL, "global")
    vec = dict(zip(ids_list, vectors))
    with engine.connect() as conn:
        ids = {Path(p).name: i for p, i in conn.execute(text("SELECT path, image_id FROM files"))}
    database = [ids[n] for n, r in zip(names, roles) if r != "query"]
    lists = []
    for n, r, g in zip(names, roles, groups):
        if r == "database":
            continue
        q = ids[n]
        cands = [d for d in database if d != q]
        order = sorted(cands, key=lambda d: 1 - float(vec[d] @ vec[q]))
        group_of = {ids[m]: h for m, h in zip(names, groups)}
        rel = [group_of[d] == g for d in order]
        lists.append((rel, sum(rel)))
    return summarize(lists, k=3)


def test_metrics_from_database_rankings_match_brute_force(engine, embedders, labelled):
    folder, csv, names, roles = labelled
    ingestor(engine, [SMALL], GLOBAL, embedders=embedders, pretrained=False).run(folder, read_labels(csv))
    result = evaluate(engine, collection(engine), folder, csv, SMALL, GLOBAL, k=3)
    expected = _brute_force(engine, names, roles, [f"g{i % 3}" for i in range(12)], folder)
    assert result.summary.n_queries == 9 and result.n_database == 9
    for key in ("map", "p_at_1", "p_at_r", "recall_at_1", "recall_at_k"):
        assert getattr(result.summary, key) == pytest.approx(getattr(expected, key), abs=1e-9), key
    for q, hits in result.rankings.items():
        assert result.files[q].path not in {h.path for h in hits} and len(hits) == 9 - (q in names[2::4] + names[3::4])


def test_compare_writes_html_and_png(engine, embedders, labelled, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSIM_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    from app.config import get_settings

    get_settings.cache_clear()
    folder, csv, names, _ = labelled
    # the small model's (random-weight) backbone is shared; vgg19 needs real weights, absent here
    comparison = api.compare(folder, csv, [SMALL.name, "vgg19"], [GLOBAL], top=5, engine=engine, embedders=embedders)
    assert [r.evaluation.model for r in comparison.results] == [SMALL.name]
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in comparison.skipped["vgg19 / global"]
    assert comparison.query_name == names[0]
    hits = comparison.results[0].query_hits
    assert hits[0].image_id == comparison.query_id and hits[0].distance == pytest.approx(0, abs=1e-6)
    html = write_html(comparison, tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 6 and "<svg" in html and SMALL.name in html
    png = write_contact_sheet(comparison, tmp_path / "r" / "sheet.png")
    assert png.stat().st_size > 1000
