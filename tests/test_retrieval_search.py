"""Search SQL against the real database with known vectors (no model needed)."""
import numpy as np
import pytest
from sqlalchemy import text

from app.describe.methods import get_method
from app.describe.registry import get_model
from app.store.embeddings import write_embeddings
from app.retrieval.query import QueryError
from app.retrieval.search import similar
from app.store.knn import knn_sql, nearest
from app.store.scope import Scope
from tests.helpers import store_images, store_random_vectors

GLOBAL = get_method("global")
DEFAULT = Scope(1)


@pytest.mark.parametrize("model,tol", [("efficientnet-lite0", 1e-5), ("resnet50", 2e-3)])
def test_distances_ascend_and_equal_one_minus_cosine(engine, model, tol):
    spec = get_model(model)
    ids, vectors = store_random_vectors(spec, "global", 60, seed=0)
    query = vectors[7] + 0.3 * vectors[8]
    with engine.begin() as conn:
        hits = nearest(conn, spec, "global", query, k=60, scope=DEFAULT)
    distances = np.array([h.distance for h in hits])
    assert len(hits) == 60
    assert np.all(np.diff(distances) >= -1e-6)
    cosine = vectors @ query / np.linalg.norm(query)
    expected = dict(zip(ids, 1.0 - cosine))
    assert max(abs(h.distance - expected[h.image_id]) for h in hits) < tol
    brute = [ids[i] for i in np.argsort(1.0 - cosine)[:5]]
    assert [h.image_id for h in hits[:2]] == brute[:2]


def test_query_by_stored_id_returns_itself_first(engine):
    spec = get_model("efficientnet-lite0")
    ids, _ = store_random_vectors(spec, "global", 20, seed=0)
    hits = similar(ids[3], spec.name, k=5, method="global", engine=engine).hits
    assert hits[0].image_id == ids[3] and hits[0].distance == pytest.approx(0.0, abs=1e-6)
    assert hits[0].label == "g0" and hits[0].path == "/img/3.jpg"


@pytest.mark.parametrize("model", ["efficientnet-lite0", "resnet50"])
def test_explain_uses_the_hnsw_index(engine, model):
    spec = get_model(model)
    store_random_vectors(spec, "global", 30, seed=0)
    q = np.full(spec.dim, 0.1, np.float32)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        sql, params = knn_sql(spec, "global", DEFAULT)
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), {"q": q, "k": 5, **params}))
    assert f"ix_{spec.table}_global_hnsw" in plan and "Index Scan" in plan, plan


def test_unknown_id_is_a_clear_error(engine):
    store_random_vectors(get_model("efficientnet-lite0"), "global", 3, seed=0)
    with pytest.raises(QueryError, match="image id 999999 is not stored in this collection"):
        similar(999999, "efficientnet-lite0", method="global", engine=engine)


def test_rows_of_other_methods_and_regions_never_reach_a_global_search(engine):
    spec = get_model("efficientnet-lite0")
    ids, vectors = store_random_vectors(spec, "global", 10, seed=0)
    query = np.random.default_rng(9).normal(size=spec.dim).astype(np.float32)
    query /= np.linalg.norm(query)
    with engine.begin() as conn:  # the same images' gem row and rmac region rows are the query itself
        write_embeddings(conn, spec, "gem", [(i, 0, query) for i in ids])
        write_embeddings(conn, spec, "rmac", [(i, r, query) for i in ids for r in range(4)])
    with engine.begin() as conn:
        hits = nearest(conn, spec, "global", query, k=20, scope=DEFAULT)
        gem = nearest(conn, spec, "gem", query, k=20, scope=DEFAULT)
    assert sorted(h.image_id for h in hits) == sorted(ids)  # each image once, none from another method
    expected = dict(zip(ids, 1.0 - vectors @ query))
    assert max(abs(h.distance - expected[h.image_id]) for h in hits) < 1e-5
    assert len(gem) == 10 and max(h.distance for h in gem) < 1e-6


def test_query_expansion_adds_the_top_three_results_other_than_the_query_itself(engine):
    from app.describe.vectors import expand
    from app.retrieval.shortlist import expand_query

    spec = get_model("efficientnet-lite0")
    # neighbours at cosine ~0.7: their weights count
    ids, vectors = store_random_vectors(spec, "global", 12, seed=0, spread=0.7)
    with engine.begin() as conn:
        hits = nearest(conn, spec, "global", vectors[0], k=6, scope=DEFAULT)
        expanded = expand_query(conn, spec, GLOBAL, vectors[:1], hits)
    assert hits[0].image_id == ids[0] and hits[0].distance < 1e-6  # the query itself: never added to itself
    top = hits[1:4]
    wanted = expand(vectors[0], [vectors[ids.index(h.image_id)] for h in top], [h.distance for h in top], alpha=3.0)
    np.testing.assert_allclose(expanded[0], wanted, atol=1e-5)


def test_the_unverified_tail_follows_the_query_averaged_with_its_verified_images(engine):
    """After the verified images, the rest come in the first stage's order from the query's
    vector plus its verified images' (each weighing as much as the query): a photo near the
    item's verified photos comes before a look-alike near the query alone, and keeps its
    distance to the query."""
    from app.retrieval.query import Query
    from app.retrieval.rerank import verified_tail
    from app.retrieval.shortlist import first_stage

    spec, method = get_model("efficientnet-lite0"), get_method("gem+sift")
    rng = np.random.default_rng(11)
    noise = rng.normal(size=(26, spec.dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    item = noise[0]
    vectors = np.stack([item + 1.2 * noise[1],  # the query: a poor view of the item
                        item + 0.3 * noise[2], item + 0.3 * noise[3],  # two verified photos of it
                        item + 0.5 * noise[4],  # a photo of it no verification reached
                        0.5 * item + 1.2 * noise[1] + 0.6 * noise[5],  # a look-alike of the query's view
                        *noise[6:]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"sha256": f"{i:064x}", "path": f"/tail/{i}.jpg", "width": 10, "height": 10, "label": None}
            for i in range(len(vectors))]
    with engine.begin() as conn:
        stored = store_images(conn, rows)
        ids = [stored[r["sha256"]] for r in rows]
        write_embeddings(conn, spec, method.stored, [(i, 0, v) for i, v in zip(ids, vectors)])
    query, a, b, photo, look_alike = ids[:5]
    with engine.begin() as conn:
        hits = first_stage(conn, spec, method, vectors[:1], 10, DEFAULT)
        known = {h.image_id: h for h in hits}
        tail = verified_tail(conn, spec, method, Query(vectors[:1], None, query), {a: 1.0, b: 1.0}, known, 10, DEFAULT)
    plain, expanded = [h.image_id for h in hits], [h.image_id for h in tail]
    assert plain.index(look_alike) < plain.index(photo)
    assert expanded.index(photo) < expanded.index(look_alike)
    assert tail[expanded.index(photo)].distance == pytest.approx(1 - float(vectors[0] @ vectors[3]), abs=1e-5)
