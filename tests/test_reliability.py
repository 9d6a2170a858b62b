"""Crash safety, database restarts, concurrent jobs, hostile strings, migrations under data."""
import json
import os
import signal
import subprocess
import sys

import psycopg
import pytest

from app.files.images import sha256
from tests.helpers import count, make_images, wait_for

MODEL = "efficientnet-lite0"


def _ingest_cmd(folder, *extra):
    return [sys.executable, "-m", "app.cli", "ingest", str(folder), "--model", MODEL, "--method", "global",
            "--quiet", *extra]


def _env(**extra):
    env = dict(os.environ)
    env.update({"IMGSIM_BATCH_SIZE": "8", **extra})
    return env


def _stored(url, table="emb_efficientnet_lite0"):
    with psycopg.connect(url) as conn:
        shas = [r[0] for r in conn.execute("SELECT sha256 FROM images")]
        rows = conn.execute(f"SELECT image_id, count(*) FROM {table} WHERE method = 'global' GROUP BY image_id").fetchall()
        orphans = conn.execute(f"SELECT count(*) FROM images i WHERE NOT EXISTS "
                               f"(SELECT 1 FROM {table} e WHERE e.image_id = i.id AND e.method = 'global')").fetchone()[0]
        index = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = "
                             "'ix_emb_efficientnet_lite0_global_hnsw'").fetchone()[0]
        orphans += conn.execute("SELECT count(*) FROM images i WHERE NOT EXISTS "
                                "(SELECT 1 FROM files f WHERE f.image_id = i.id)").fetchone()[0]
    return shas, rows, orphans, index


def _expected(folder):
    return {sha256(p.read_bytes()) for p in folder.rglob("*.png")}


@pytest.mark.slow
def test_sigkill_after_committed_batches_then_rerun_equals_a_clean_run(database, tmp_path):
    folder = tmp_path / "photos"
    make_images(folder, [f"p{i:03d}.png" for i in range(160)], seed=11)
    committed = 0
    for _ in range(3):
        proc = subprocess.Popen(_ingest_cmd(folder), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # kill once this run has committed at least one batch of its own (polled, not guessed)
        wait_for(lambda: count(database, "SELECT count(*) FROM images") >= committed + 8, what="a new batch")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shas, rows, orphans, index = _stored(database)
        assert len(shas) % 8 == 0 and len(rows) == len(shas) and orphans == 0  # whole batches only
        assert len(shas) > committed and (committed > 0 or index == 0)  # the first load's index was dropped
        committed = len(shas)
    assert committed < 160, "the job finished before it could be killed; make the set larger"
    subprocess.run(_ingest_cmd(folder), env=_env(), check=True, capture_output=True)
    shas, rows, orphans, index = _stored(database)
    assert len(shas) == len(set(shas)) and set(shas) == _expected(folder)  # none missing, none doubled
    assert len(rows) == 160 and all(n == 1 for _, n in rows)
    assert orphans == 0 and index == 1  # the rerun built the index the kill left dropped


@pytest.mark.slow
def test_concurrent_jobs_over_overlapping_folders_store_each_image_once(database, tmp_path):
    parts = {}
    for name, start in (("a", 0), ("b", 40), ("c", 80)):
        parts[name] = make_images(tmp_path / "all" / name, [f"{name}{i:03d}.png" for i in range(40)],
                                  seed=100 + start)
    # Jobs over overlapping trees: all, a+b (via links), b+c.
    for combo in ("ab", "bc"):
        (tmp_path / combo).mkdir()
        for part in combo:
            for path in parts[part]:
                (tmp_path / combo / path.name).symlink_to(path)
    jobs = [subprocess.Popen(_ingest_cmd(tmp_path / folder), env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for folder in ("all", "ab", "bc", "all")]
    wait_for(lambda: count(database, "SELECT count(*) FROM images") >= 8, what="the first batch")
    searches = 0
    while any(j.poll() is None for j in jobs):  # every search meanwhile answers in full
        result = subprocess.run([sys.executable, "-m", "app.cli", "search", str(parts["a"][0]), "--model", MODEL,
                                 "--method", "global", "-k", "3", "--json"], env=_env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)["hits"]) == 3
        searches += 1
    for job in jobs:
        _, err = job.communicate()
        assert job.returncode == 0, err
    shas, rows, orphans, index = _stored(database)
    assert len(shas) == len(set(shas)) == 120 and set(shas) == _expected(tmp_path / "all")
    assert len(rows) == 120 and all(n == 1 for _, n in rows)
    assert orphans == 0 and index == 1
    assert searches >= 1


HOSTILE = ["x'); DROP TABLE images; --", "Robert'); DELETE FROM failures;--", "\"; TRUNCATE images CASCADE; --",
           "1 OR 1=1", "$$; DROP SCHEMA public CASCADE; $$"]


def test_hostile_strings_in_names_labels_and_arguments_change_nothing(database, tmp_path):
    folder = tmp_path / "photos"
    names = [f"{s.replace('/', '_')}.png" for s in HOSTILE]
    make_images(folder, names, seed=31)
    labels = tmp_path / "labels.csv"
    import csv

    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        for name, s in zip(names, HOSTILE):
            writer.writerow([name, s])
    subprocess.run(_ingest_cmd(folder, "--labels", str(labels)), env=_env(), check=True, capture_output=True)
    for bad in HOSTILE:
        for args in (["search", "1", "--model", bad], ["search", "1", "--method", bad], ["search", bad],
                     ["evaluate", str(folder), "--labels", str(labels), "--model", bad]):
            result = subprocess.run([sys.executable, "-m", "app.cli", *args], env=_env(), capture_output=True,
                                    text=True)
            assert result.returncode != 0 and "Traceback" not in result.stderr, (args, result.stderr)
    with psycopg.connect(database) as conn:
        stored = dict(conn.execute("SELECT path, label FROM files").fetchall())
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert sorted(stored.values()) == sorted(HOSTILE)
    assert {os.path.basename(p) for p in stored} == set(names)
    assert {"images", "failures", "emb_efficientnet_lite0"} <= tables
    assert not (tmp_path / "x'); DROP TABLE images; --").exists()
