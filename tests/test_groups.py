"""Decisions and groups: the same-item confidence, groups that do not chain, a person's decisions
that stay, the SQL views, and the scores of groups against labels."""
import csv
import itertools
import json
import shutil

import numpy as np
import psycopg
import pytest
from PIL import Image

from app import api
from app.collection.linkage import average_linkage
from app.evaluation.grouping import evidence_reach, group_scores
from app.retrieval.confidence import covered_share, same_item_confidence
from app.store.db import get_engine
from tests.helpers import LITE0, make_images
from tests.test_cli import imgsim

JANUARY = {f"{n}.jpg" for n in range(1, 10)}
FEBRUARY = {f"{n}.jpg" for n in range(10, 19)}


def clique(ids, value=0.95):
    return {(a, b): value for a, b in itertools.combinations(sorted(ids), 2)}


def test_a_bridge_photo_does_not_merge_two_groups():
    first, second, bridge = [1, 2, 3, 4], [5, 6, 7, 8], 9
    edges = {**clique(first), **clique(second), (1, bridge): 0.97, (5, bridge): 0.97}
    found = average_linkage(range(1, 10), edges, 0.5, unknown=0.2)
    assert not any(set(first) & set(g) and set(second) & set(g) for g in found)
    assert any(set(first) <= set(g) for g in found) and any(set(second) <= set(g) for g in found)


def test_a_look_alike_paired_early_leaves_for_its_own_group():
    # 9 verifies best with 5 (a shared background), before 5 meets the members of its own item
    edges = {**clique([5, 6, 7, 8], 0.9), (5, 9): 0.99, **{(p, 9): 0.9 for p in (10, 11)}, (10, 11): 0.9}
    found = average_linkage(range(5, 12), edges, 0.5, unknown=0.2)
    assert [5, 6, 7, 8] in found and [9, 10, 11] in found


def test_decisions_bind_the_grouping():
    edges = clique([1, 2, 3, 4])
    apart = average_linkage(range(1, 5), edges, 0.5, apart=[(2, 3)])
    assert not any({2, 3} <= set(g) for g in apart)
    joined = average_linkage(range(1, 7), {**edges, (5, 6): 0.1}, 0.5, same=[(1, 5), (5, 6)])
    assert any({1, 5, 6} <= set(g) for g in joined)  # what a person joined stays joined


def test_confidence_never_falls_with_more_evidence():
    scores = np.geomspace(0.5, 60, 40)
    for share in (0.0, 0.05, 0.3):
        for first_look in (True, False):
            values = [same_item_confidence(s, share, first_look) for s in scores]
            assert all(b >= a for a, b in zip(values, values[1:]))
    for s in (1.0, 5.0, 20.0):
        by_share = [same_item_confidence(s, share) for share in np.linspace(0, 1, 21)]
        assert all(b >= a for a, b in zip(by_share, by_share[1:]))
        assert same_item_confidence(s, 0.1, True) > same_item_confidence(s, 0.1, False)  # the looser second look
    assert 0.0 < same_item_confidence(3.0, 0.02) < 0.5 < same_item_confidence(30.0, 0.3) < 1.0
    assert same_item_confidence(0.0, 0.5) == 0.0


def test_covered_share_counts_cells_of_the_keypoints_frame():
    points = np.array([[0, 0], [1023, 767], [10, 10], [60, 10], [10, 60]], np.float32)
    share = covered_share(points, np.array([2, 3, 4]), 51.2)
    assert share == pytest.approx(3 / (20 * 15))
    assert covered_share(points, np.array([], int), 51.2) == 0.0


def test_group_scores_against_labels():
    labels = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "c"}
    perfect = group_scores([[1, 2, 3], [4, 5]], labels)
    assert (perfect.pair_precision, perfect.pair_recall, perfect.bcubed_f1) == (1.0, 1.0, 1.0)
    assert (perfect.groups, perfect.true_groups, perfect.largest) == (2, 2, 3)
    merged = group_scores([[1, 2, 3, 4, 5]], labels)
    assert merged.pair_precision == pytest.approx(4 / 10) and merged.pair_recall == 1.0
    nothing = group_scores([], labels)
    assert nothing.pair_recall == 0.0 and nothing.pair_precision == 1.0 and nothing.bcubed_precision == 1.0
    assert nothing.edge_recall is None and nothing.reachable_recall is None


def test_how_far_the_edges_reach():
    """A chain of true edges reaches its item's pairs without an edge of their own; an edge
    between two items carries nobody to the other item."""
    labels = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "c"}
    chain_and_bridge = {(1, 2): 0.9, (2, 3): 0.8, (3, 4): 0.95}  # 4 true pairs: (1,2) (1,3) (2,3) (4,5)
    assert evidence_reach(chain_and_bridge, labels) == (2 / 4, 3 / 4)
    scores = group_scores([[1, 2]], labels, chain_and_bridge)
    assert (scores.edge_recall, scores.reachable_recall) == (0.5, 0.75) and scores.pair_recall == 0.25
    assert evidence_reach({}, labels) == (0.0, 0.0)
    assert evidence_reach({(1, 6): 0.9}, {1: "a", 6: "c"}) == (1.0, 1.0)  # no true pair to miss


def names(group) -> set[str]:
    return {m["path"].rsplit("/", 1)[-1] for m in group["members"]}


def test_the_calendar_in_two_groups_and_a_persons_decisions_stay(database, calendar, tmp_path):
    folder, labels = calendar
    photos = tmp_path / "calendar"
    shutil.copytree(folder, photos)
    assert imgsim("ingest", photos, "--model", LITE0.name, "--labels", photos / labels.name).returncode == 0
    found = json.loads(imgsim("groups", "--model", LITE0.name, "--json").stdout)["groups"]
    assert sorted(map(names, found), key=len) == [FEBRUARY, JANUARY] or \
        [names(g) for g in found] in ([JANUARY, FEBRUARY], [FEBRUARY, JANUARY])
    for group in found:
        assert sum(m["keep"] for m in group["members"]) == 1
        assert all(m["confidence"] >= 0.5 and m["evidence"] for m in group["members"])
    ids = {m["path"].rsplit("/", 1)[-1]: m["id"] for g in found for m in g["members"]}
    scores = api.group_scores("default", LITE0.name, engine=get_engine())  # against the labels ingested
    assert (scores.pair_precision, scores.pair_recall, scores.groups, scores.true_groups) == (1.0, 1.0, 2, 2)
    assert scores.reachable_recall == 1.0 and 0.9 <= scores.edge_recall <= 1.0  # nearly every pair verified

    # a person says 9.jpg is not the same item as the rest of January
    others = [ids[n] for n in JANUARY - {"9.jpg"}]
    said = imgsim("decide", "not-same", ids["9.jpg"], *others, "--json")
    assert json.loads(said.stdout)["pairs"] == 8
    assert _groups_without(ids["9.jpg"])

    # a bridge photo: January's page on the left, February's on the right; and a new February photo
    left, right = Image.open(photos / "1.jpg"), Image.open(photos / "10.jpg")
    bridge = Image.new("RGB", left.size)
    bridge.paste(left.crop((0, 0, left.width // 2, left.height)), (0, 0))
    bridge.paste(right.resize(left.size).crop((left.width // 2, 0, left.width, left.height)), (left.width // 2, 0))
    bridge.save(photos / "bridge.jpg", quality=92)
    Image.open(photos / "12.jpg").rotate(90, expand=True).save(photos / "12-turned.jpg", quality=85)
    assert imgsim("ingest", photos, "--model", LITE0.name).returncode == 0
    after = json.loads(imgsim("groups", "--model", LITE0.name, "--json").stdout)["groups"]
    assert not any(names(g) & JANUARY and names(g) & FEBRUARY for g in after), "the bridge merged the two pages"
    assert any(FEBRUARY | {"12-turned.jpg"} <= names(g) for g in after)
    assert _groups_without(ids["9.jpg"]), "the decision outlived an ingest"
    nine = next(m for g in after for m in g["members"] if m["id"] == ids["9.jpg"]) if any(
        ids["9.jpg"] in {m["id"] for m in g["members"]} for g in after) else None
    assert nine is None or nine["decision"] == "not the same"

    export = tmp_path / "groups.csv"
    imgsim("groups", "--model", LITE0.name, "--export", export)
    rows = list(csv.DictReader(export.open()))
    assert list(rows[0]) == ["group", "path", "decision", "confidence", "keep"]
    assert {r["path"].rsplit("/", 1)[-1] for r in rows} >= FEBRUARY
    assert all(0.5 <= float(r["confidence"]) <= 1 for r in rows)

    # the same in SQL: the views follow the stored edges and the decision
    with psycopg.connect(imgsim("db", "url").stdout.strip()) as conn:
        groups_in_sql = conn.execute("SELECT group_id, array_agg(image_id ORDER BY image_id) FROM item_groups "
                                     "GROUP BY group_id").fetchall()
        assert sorted(len(members) for _, members in groups_in_sql) == sorted(len(g["members"]) for g in after)
        same = conn.execute("SELECT other_id, confidence, decided FROM same_item WHERE image_id = %s",
                            (ids["9.jpg"],)).fetchall()
        assert {o for o, c, d in same if d is False} == set(others) and all(c == 0 for o, c, d in same if d is False)
        assert conn.execute("SELECT count(*) FROM same_item WHERE confidence > 1 OR confidence < 0").fetchone()[0] == 0

    # forgetting the decision puts 9.jpg back with January
    imgsim("decide", "forget", ids["9.jpg"], *others)
    back = json.loads(imgsim("groups", "--model", LITE0.name, "--json").stdout)["groups"]
    assert any(JANUARY <= names(g) for g in back)


def _groups_without(image_id: int) -> bool:
    """9.jpg is in no group with January's other photos."""
    found = json.loads(imgsim("groups", "--model", LITE0.name, "--json").stdout)["groups"]
    return not any(image_id in {m["id"] for m in g["members"]} and len(names(g) & JANUARY) > 1 for g in found)


def test_search_keeps_hits_at_a_confidence(database, calendar):
    folder, labels = calendar
    imgsim("ingest", folder, "--model", LITE0.name, "--labels", labels)
    answer = json.loads(imgsim("search", folder / "2.jpg", "--model", LITE0.name, "-k", "18", "--json").stdout)
    verified = [h for h in answer["hits"] if h["confidence"] is not None]
    assert verified and all(0 <= h["confidence"] <= 1 for h in verified)
    sure = json.loads(imgsim("search", folder / "2.jpg", "--model", LITE0.name, "-k", "18", "--min-confidence", "0.5",
                             "--json").stdout)["hits"]
    assert sure and all(h["confidence"] >= 0.5 for h in sure)
    assert {h["path"].rsplit("/", 1)[-1] for h in sure} <= JANUARY
    assert len(sure) >= 8
    table = imgsim("search", folder / "2.jpg", "--model", LITE0.name, "-k", "3").stdout
    assert "confidence" in table
    refused = imgsim("search", folder / "2.jpg", "--method", "gem", "--min-confidence", "0.5", check=False)
    assert refused.returncode == 1 and "needs a verifying method" in refused.stderr


def test_duplicates_lists_exact_copies_and_the_groups(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.png", "c.jpg"], seed=4)
    shutil.copy(tmp_path / "a.jpg", tmp_path / "a-copy.jpg")
    with Image.open(tmp_path / "b.png") as b:
        b.convert("RGB").resize((b.width * 2 // 3, b.height * 2 // 3)).save(tmp_path / "b-small.jpg", quality=75)
    imgsim("ingest", tmp_path, "--model", LITE0.name)
    found = json.loads(imgsim("duplicates", "--model", LITE0.name, "--json").stdout)
    assert [sorted(i["path"].rsplit("/", 1)[-1] for i in c) for c in found["exact_copies"]] == [["a-copy.jpg", "a.jpg"]]
    assert [sorted(m["path"].rsplit("/", 1)[-1] for m in g) for g in found["groups"]] == [["b-small.jpg", "b.png"]]
    keep = [m for g in found["groups"] for m in g if m["keep"]]
    assert [m["path"].rsplit("/", 1)[-1] for m in keep] == ["b.png"]  # the most pixels
    from app import api

    assert api.duplicates(LITE0.name) == found["groups"]  # the Python API gives what the command prints


def test_rows_built_before_confidences_are_owed_and_computed_again(engine, lite0_embedders, calendar):
    from sqlalchemy import text

    from app import api
    from app.collection.groups import GroupingError
    from tests.helpers import ingest_lite0

    folder, labels = calendar
    ingest_lite0(engine, lite0_embedders, folder, labels, "verified")
    api.build_graph(LITE0.name, engine=engine)
    assert len(api.groups(LITE0.name, engine=engine)) == 2
    with engine.begin() as conn:  # as a graph built before schema 0011 left them
        conn.execute(text("UPDATE match_graph SET confidences = NULL"))
    with pytest.raises(GroupingError, match="imgsim index graph"):
        api.groups(LITE0.name, engine=engine)
    owed = [f for f in api.check(engine=engine) if f["kind"] == "graph"]
    assert owed and owed[0]["count"] == 18 and "confidences" in owed[0]["message"]
    api.check(repair=True, engine=engine)
    assert not [f for f in api.check(engine=engine) if f["kind"] == "graph"]
    assert sorted(len(g.members) for g in api.groups(LITE0.name, engine=engine)) == [9, 9]
