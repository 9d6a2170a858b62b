"""The ``imgsim`` command end to end, as a user runs it (real database, real offline weights)."""
import json
import os
import subprocess
import sys

import psycopg
import pytest

from tests.helpers import LITE0, make_images

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
    assert "broken.jpg" in first.stderr and "default: found 4: new 3, skipped 0 (unchanged 0), failed 1" in first.stdout
    again = imgsim("ingest", tmp_path, "--model", MODEL, check=False)
    assert "new 0, skipped 3 (unchanged 3)" in again.stdout

    answer = json.loads(imgsim("search", tmp_path / "a.jpg", "--model", MODEL, "-k", "3", "--json").stdout)
    assert (answer["model"], answer["method"], answer["resolved"], answer["collection"]) == \
        (MODEL, "verified", "gem+sift", "default")
    hits = answer["hits"]
    assert [h["path"].rsplit("/", 1)[-1] for h in hits][0] == "a.jpg"
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-6) and hits[0]["label"] == "alpha"
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert set(hits[0]) >= {"path", "distance", "label"}

    table = imgsim("search", tmp_path / "a.jpg", "--model", MODEL).stdout
    assert "a.jpg" in table and "alpha" in table

    new = tmp_path.parent / f"{tmp_path.name}-query.png"
    make_images(tmp_path.parent, [new.name], seed=9)
    on_the_fly = json.loads(imgsim("search", new, "--model", MODEL, "-k", "2", "--json").stdout)["hits"]
    assert len(on_the_fly) == 2 and on_the_fly[0]["distance"] > 0

    failures = json.loads(imgsim("failures", "--json").stdout)
    assert [f["path"].rsplit("/", 1)[-1] for f in failures] == ["broken.jpg"]

    url = imgsim("db", "url").stdout.strip()
    assert url == database
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.path, e.embedding <=> (SELECT embedding FROM emb_efficientnet_lite0 q "
            "JOIN files qi ON qi.image_id = q.image_id WHERE qi.path LIKE '%/a.jpg') AS distance "
            "FROM emb_efficientnet_lite0 e JOIN files i ON i.image_id = e.image_id ORDER BY distance LIMIT 3").fetchall()
    assert [r[0] for r in rows] == [h["path"] for h in hits]


def test_unknown_model_and_hostile_names_fail_from_the_registry(database, tmp_path):
    result = imgsim("search", "1", "--model", "x'; DROP TABLE images; --", check=False)
    assert result.returncode == 1 and "unknown model" in result.stderr
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('images')").fetchone()[0] == "images"


def test_db_downgrade_and_upgrade_commands(database):
    from app.store.migrate import heads

    def tables():
        with psycopg.connect(database) as conn:
            return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    assert imgsim("db", "downgrade", "base").stdout.strip() == "database at revision base"
    assert tables() == {"alembic_version"}
    assert imgsim("db", "upgrade").stdout.strip() == f"database at revision {heads()[0]}"
    assert {"images", "failures", "whitening", "local_features", "match_graph", LITE0.table} <= tables()


def test_missing_keras_weights_fail_offline_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSIM_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    result = imgsim("models", "fetch", "vgg16", check=False)
    assert result.returncode == 1
    line = [l for l in result.stderr.splitlines() if l.startswith("vgg16:")]
    assert len(line) == 1
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in line[0]
    assert "imgsim models fetch vgg16" in line[0] and str(tmp_path / "empty-cache") in line[0]


def test_cli_methods_search_duplicates(database, calendar):
    folder, labels = calendar
    run = lambda *a: imgsim(*a, check=False)
    ingested = run("ingest", folder, "--model", LITE0.name, "--method", "gem+sift", "--labels", labels)
    assert ingested.returncode == 0 and "match graph efficientnet-lite0/gem+sift in default: rows for 18 images" in ingested.stdout
    hits = json.loads(run("search", folder / "3.jpg", "--model", LITE0.name, "--method", "gem+sift", "-k", "4",
                          "--json").stdout)["hits"]
    assert hits[0]["path"].endswith("/3.jpg") and all(h["inliers"] is not None for h in hits[1:])
    assert "rows for 0 images" in run("index", "graph", "--model", LITE0.name, "--method", "gem+sift").stdout
    graph = run("index", "graph", "--model", LITE0.name, "--method", "gem+sift", "--rebuild", "-q")
    assert graph.returncode == 0 and "rows for 18 images" in graph.stdout
    dba = run("index", "dba", "--model", LITE0.name, "--method", "gem+dba")
    assert dba.stdout.strip() == "efficientnet-lite0/gem+dba in default: 18 images augmented"
    with psycopg.connect(imgsim("db", "url").stdout.strip()) as conn:
        assert conn.execute(f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+dba'").fetchone()[0] == 18
    not_verifying = run("index", "graph", "--model", LITE0.name, "--method", "gem")
    assert not_verifying.returncode == 1 and "does not verify" in not_verifying.stderr
    hits = json.loads(run("search", folder / "3.jpg", "--model", LITE0.name, "--method", "gem+sift", "-k", "4",
                          "--json").stdout)["hits"]
    assert all(h["score"] is not None for h in hits[1:])
    methods = {m["name"] for m in json.loads(run("methods", "--json").stdout)}
    assert {"global", "gem", "gem-ms", "rmac", "verified"} <= methods
    dup = run("duplicates", "--model", LITE0.name, "--method", "gem+sift", "--json")
    groups = json.loads(dup.stdout)["groups"]  # photos of the same page are the same item; the two pages never mix
    assert dup.returncode == 0 and groups and all(len({item["label"] for item in g}) == 1 for g in groups)
    evaluation = json.loads(run("evaluate", folder, "--labels", labels, "--model", LITE0.name, "--method", "gem+sift",
                                "--json").stdout)
    assert (evaluation["model"], evaluation["method"], evaluation["n_queries"]) == (LITE0.name, "gem+sift", 18)
    assert evaluation["collection"] == f"{folder.parent.name}/{folder.name}" and evaluation["conflicts"] == []  # apart from default
    assert evaluation["p_at_1"] == 1.0 and evaluation["map"] == pytest.approx(0.999, abs=0.015)


def test_ingest_json_and_search_within_a_distance(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.png", "c.jpg"], seed=17)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    ingested = imgsim("ingest", tmp_path, "--model", MODEL, "--method", "global", "--json", check=False)
    assert ingested.returncode == 3 and ingested.stderr == ""  # failures are in the JSON, not on stderr
    report = json.loads(ingested.stdout)
    assert (report["found"], report["new"], report["skipped"], report["embedded"]) == (4, 3, 0, {MODEL: 3})
    assert (report["collection"], report["removed"], report["unchanged"]) == ("default", 0, 0)
    assert report["failed"] == [{"path": str(tmp_path / "broken.jpg"), "reason": "not a recognised image format"}]
    near = json.loads(imgsim("search", tmp_path / "a.jpg", "--model", MODEL, "--method", "global",
                             "--max-distance", "0.000001", "--json").stdout)["hits"]
    assert [h["path"] for h in near] == [str(tmp_path / "a.jpg")]  # itself, and nothing farther
    everything = json.loads(imgsim("search", tmp_path / "a.jpg", "--model", MODEL, "--method", "global",
                                   "--max-distance", "2", "--json").stdout)["hits"]
    assert len(everything) == 3


def test_sync_remove_collections_and_filters_from_the_command_line(database, tmp_path):
    make_images(tmp_path / "lib", ["a.jpg", "b.jpg", "sub/c.jpg"], seed=21)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.jpg,poster\nb.jpg,poster\nsub/c.jpg,dvd\n")
    imgsim("ingest", tmp_path / "lib", "--method", "global", "--labels", labels, "-q")
    (tmp_path / "lib" / "b.jpg").unlink()
    synced = json.loads(imgsim("ingest", tmp_path / "lib", "--method", "global", "--sync", "--json").stdout)
    assert (synced["removed"], synced["removed_images"], synced["unchanged"]) == (1, 1, 2)
    assert synced["removed_paths"] == [str(tmp_path / "lib" / "b.jpg")]
    answer = json.loads(imgsim("search", tmp_path / "lib" / "a.jpg", "--method", "global", "--label", "dvd", "--json").stdout)
    assert [h["paths"] for h in answer["hits"]] == [[str(tmp_path / "lib" / "sub" / "c.jpg")]]
    under = json.loads(imgsim("search", tmp_path / "lib" / "a.jpg", "--method", "global", "--under", tmp_path / "lib" / "sub",
                              "--json").stdout)["hits"]
    assert [h["path"] for h in under] == [str(tmp_path / "lib" / "sub" / "c.jpg")]
    removed = imgsim("remove", tmp_path / "lib" / "sub", tmp_path / "lib" / "nothing.jpg", check=False)
    assert removed.returncode == 1 and "removed 1 files and 1 images from default" in removed.stdout
    assert f"not stored: {tmp_path / 'lib' / 'nothing.jpg'}" in removed.stderr
    listed = json.loads(imgsim("collections", "--json").stdout)
    assert [(c["name"], c["files"], c["images"]) for c in listed] == [("default", 1, 1)]
    unknown = imgsim("search", "1", "--method", "global", "--collection", "nope", check=False)
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        "error: no collection named 'nope' (collections: default)"


def test_ctrl_c_during_an_ingest_says_interrupted(database, tmp_path):
    """Typer turns Ctrl-C into exit 130 without a word: the boundary says it, as everywhere else."""
    import signal

    from tests.helpers import count, wait_for

    make_images(tmp_path, [f"p{i:03}.jpg" for i in range(300)], seed=40)
    job = subprocess.Popen([sys.executable, "-m", "app.cli", "ingest", tmp_path, "--model", MODEL, "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: count(database, "SELECT count(*) FROM files") >= 16 or job.poll() is not None, 300,
             "the first batch")  # the network is running: a fault point, not a guessed delay
    assert job.poll() is None, "the ingest ended before it could be interrupted"
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr


def test_only_ascii_digits_are_ids_and_a_malformed_ipv6_url_is_one_line(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    imgsim("ingest", tmp_path, "--model", MODEL, "--method", "gem")
    for text in ("٥", "５"):  # Arabic-Indic and full-width five: a file name, not image 5
        run = imgsim("search", text, "--method", "gem", check=False)
        assert run.returncode == 1 and "no such file and not an image id" in run.stderr, run.stderr
    assert imgsim("search", "1", "--method", "gem", "--json").returncode == 0
    env_url = {**os.environ, "DATABASE_URL": "postgresql://u@[::1:5432/db"}
    bad = subprocess.run([sys.executable, "-m", "app.cli", "collections"], capture_output=True, text=True,
                         env=env_url, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "DATABASE_URL is not a URL" in bad.stderr
    assert "internal error" not in bad.stderr
