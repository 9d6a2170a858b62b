"""Faults around the work: a wrong or unreachable database, a server stopped mid-job, two jobs
at once, an unusable IMGSIM_HOME, endless inputs, strange names. Each gives one clear line and
leaves the database whole; all against the real embedded PostgreSQL."""
from __future__ import annotations

import builtins
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from app.files.paths import path_text
from app.store.locks import lock_key
from tests.helpers import LITE0, count, make_images, store_random_vectors, wait_for

ROOT = Path(__file__).resolve().parent.parent


def imgsim(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env or dict(os.environ), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed (warnings aside), asserting there is nothing else."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ---- a wrong or unreachable database ------------------------------------------------------------
def _bad_urls(socket_dir: str) -> list[tuple[str, int, str]]:
    return [
        ("mysql://me:secret@localhost/photos", 1, "mysql:// is not supported"),
        ("this is not a url", 1, "not a URL"),
        ("postgresql://me:secret@127.0.0.1:1/photos", 4, "cannot reach the database"),
        (f"postgresql://postgres:secret@/no_such_db?host={socket_dir}", 4, 'database "no_such_db" does not exist'),
        (f"postgresql://nobody:secret@/postgres?host={socket_dir}", 4, 'role "nobody" does not exist'),
    ]


def test_database_faults_are_one_line_without_the_password(pg_uri):
    socket_dir = pg_uri.split("host=", 1)[1]
    for url, status, says in _bad_urls(socket_dir):
        proc = imgsim("search", "1", "--method", "global", env={**os.environ, "DATABASE_URL": url})
        line = error_line(proc)
        assert proc.returncode == status and says in line, (url, line)
        assert "secret" not in proc.stdout + proc.stderr


def test_debug_shows_the_traceback():
    env = {**os.environ, "DATABASE_URL": "mysql://me:secret@localhost/photos", "IMGSIM_DEBUG": "1"}
    assert "Traceback" in imgsim("search", "1", env=env).stderr


def test_a_never_migrated_database_is_migrated_by_search_and_reported_by_check(empty_db):
    proc = imgsim("search", "1", "--method", "global")
    assert proc.returncode == 1 and "UndefinedTable" not in proc.stderr
    assert "no efficientnet-lite0/global vectors are stored in collection 'default'" in error_line(proc)
    # search migrated it
    assert count(empty_db, "SELECT count(*) FROM alembic_version") == 1


def test_db_check_reports_an_unmigrated_schema(empty_db):
    proc = imgsim("db", "check")
    assert proc.returncode == 1 and "run `imgsim db upgrade`" in proc.stdout
    assert imgsim("db", "check", "--repair").returncode == 0
    assert imgsim("db", "check").returncode == 0


# ---- IMGSIM_HOME --------------------------------------------------------------------------------
@pytest.mark.parametrize("home", ["file", "/proc/imgsim-home", "/sys/imgsim-home"])
def test_an_unusable_home_is_refused_in_one_line(home, tmp_path):
    if home == "file":
        home = str(tmp_path / "a-file")
        Path(home).write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = imgsim("db", "url", env={**env, "IMGSIM_HOME": home})
    assert proc.returncode == 1 and f"IMGSIM_HOME={home}" in error_line(proc)


@pytest.fixture(scope="module")
def own_server():
    """A server of its own (stopped and started by the tests, never the session's), in a home
    whose name has a space and a non-ASCII letter. Yields (pgdata, libpq URI)."""
    from app.store.db import embedded_uri, stop_embedded

    base = Path(tempfile.mkdtemp(prefix="imgsim-own-", dir="/tmp"))
    os.chmod(base, 0o755)
    pgdata = base / "my photos ü" / "pgdata"
    uri = embedded_uri(pgdata)
    yield pgdata, uri
    stop_embedded(pgdata)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_db(own_server, monkeypatch):
    """A fresh database on ``own_server``, migrated; DATABASE_URL points at it. Yields (pgdata, URL)."""
    from app.store import migrate
    from tests.helpers import fresh_database

    pgdata, uri = own_server
    with fresh_database(uri, monkeypatch) as url:
        migrate.upgrade()
        yield pgdata, url


def test_a_home_with_a_space_and_non_ascii_starts_stops_and_starts_again(own_server):
    pgdata, _ = own_server
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "IMGSIM_HOME": str(pgdata.parent)}
    assert imgsim("db", "stop", env=env).stdout.strip() == "stopped"
    started = imgsim("db", "url", env=env)
    assert started.returncode == 0, started.stderr
    assert count(started.stdout.strip(), "SELECT 1") == 1


def _shown(uri: str, name: str) -> str:
    with psycopg.connect(uri) as conn:
        return conn.execute(f"SHOW {name}").fetchone()[0]  # a fixed name from this test


def test_the_embedded_servers_memory_follows_the_setting_from_its_next_start(own_server, monkeypatch):
    from app.config import get_settings, machine_memory_mb
    from app.store.db import embedded_uri, stop_embedded

    pgdata, uri = own_server
    # a new data folder gets the settings at its first start (the default: a quarter of the machine)
    assert _shown(uri, "shared_buffers") == f"{get_settings().db_memory_mb}MB"
    assert _shown(uri, "effective_cache_size") == f"{max(get_settings().db_memory_mb, machine_memory_mb() * 3 // 4)}MB"
    (pgdata / "postgresql.conf").open("a").write("work_mem = '7MB'\n")  # a user's own line is kept
    monkeypatch.setenv("IMGSIM_DB_MEMORY_MB", "200")
    get_settings.cache_clear()
    assert _shown(embedded_uri(pgdata), "shared_buffers") != "200MB"  # running: next start
    assert stop_embedded(pgdata)
    restarted = embedded_uri(pgdata)
    assert _shown(restarted, "shared_buffers") == "200MB" and _shown(restarted, "work_mem") == "7MB"
    assert (pgdata / "postgresql.conf").read_text().count("imgsim.conf") == 1
    monkeypatch.delenv("IMGSIM_DB_MEMORY_MB")
    get_settings.cache_clear()
    assert stop_embedded(pgdata)
    assert _shown(embedded_uri(pgdata), "shared_buffers") == f"{get_settings().db_memory_mb}MB"


def test_a_bad_memory_setting_is_one_line(tmp_path):
    result = imgsim("db", "url", env={**os.environ, "IMGSIM_HOME": str(tmp_path / "home"), "IMGSIM_DB_MEMORY_MB": "lots"})
    assert result.returncode != 0 and error_line(result) == "error: IMGSIM_DB_MEMORY_MB='lots': expected an integer from 16 to 2097152"


# ---- the server stopped in the middle of a job ----------------------------------------------------
def _ingest(folder: Path, env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "IMGSIM_BATCH_SIZE": "8", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "app.cli", "ingest", str(folder), "--method", "global",
                             "--quiet"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class StartedIngest:
    """An ``imgsim ingest`` of 96 new images in a subprocess, its stderr collected as it comes."""

    def __init__(self, url: str, folder: Path, seed: int, env_extra: dict):
        make_images(folder, [f"i{i:03d}.png" for i in range(96)], seed=seed)
        self.folder, self.lines = folder, []
        self.proc = _ingest(folder, env_extra)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()
        wait_for(lambda: count(url, "SELECT count(*) FROM images") >= 8, what="the first committed batch")

    def finish(self, timeout: float) -> tuple[int, str]:
        status = self.proc.wait(timeout=timeout)
        self.reader.join(10)
        return status, "".join(self.lines)


def _index_present(url: str) -> bool:
    return count(url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_emb_efficientnet_lite0_global_hnsw'") == 1


@pytest.mark.slow
def test_server_stopped_during_a_first_load_gives_one_line_and_check_repairs(own_db, tmp_path):
    from app.store.db import embedded_uri, stop_embedded

    pgdata, url = own_db
    job = StartedIngest(url, tmp_path / "photos", 31, {"IMGSIM_RETRY_SECONDS": "1"})
    assert not _index_present(url)  # a first load builds its index after the COPY
    assert stop_embedded(pgdata)
    status, stderr = job.finish(timeout=120)
    assert status == 4 and "cannot reach the database" in error_line(subprocess.CompletedProcess([], 4, "", stderr))
    search = imgsim("search", "1", "--method", "global")  # and a search while it is down
    assert search.returncode == 4 and "cannot reach the database" in error_line(search)
    embedded_uri(pgdata)
    found = imgsim("db", "check")
    assert found.returncode == 1 and "without an HNSW index" in found.stdout
    assert imgsim("db", "check", "--repair").returncode == 0 and _index_present(url)
    assert imgsim("ingest", str(job.folder), "--method", "global", "--quiet").returncode == 0
    assert count(url, "SELECT count(*) FROM images") == 96
    assert count(url, "SELECT count(DISTINCT image_id) FROM emb_efficientnet_lite0 WHERE method = 'global'") == 96


@pytest.mark.slow
def test_server_restarted_during_an_ingest_is_retried_and_the_job_finishes(own_db, tmp_path):
    from app.store.db import embedded_uri, stop_embedded

    pgdata, url = own_db
    job = StartedIngest(url, tmp_path / "photos", 21, {})
    assert stop_embedded(pgdata)
    # the server stays down until the job says that it retries
    retried = wait_for(lambda: [line for line in job.lines if "retrying in" in line], what="a retry")
    assert retried[0].startswith("warning: database unavailable"), retried
    embedded_uri(pgdata)
    status, stderr = job.finish(timeout=300)
    assert status == 0, stderr
    assert count(url, "SELECT count(*) FROM images") == 96 and _index_present(url)
    assert count(url, "SELECT count(*) FROM emb_efficientnet_lite0 WHERE method = 'global'") == 96


# ---- two jobs at once -----------------------------------------------------------------------------
def _waiting_on_advisory_locks(url: str) -> int:
    return count(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")


def test_two_whitenings_at_once_wait_for_each_other(database):
    store_random_vectors(LITE0, "gem", 60)
    whiten = [sys.executable, "-m", "app.cli", "index", "whiten", "--method", "gem"]
    with psycopg.connect(database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("job", LITE0.table, "1:gem+w")])
        jobs = [subprocess.Popen(whiten, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        wait_for(lambda: _waiting_on_advisory_locks(database) == 2, what="both jobs to wait")
    results = [job.communicate(timeout=120) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], results
    assert all("waiting for another whitening of efficientnet-lite0/gem" in e for _, e in results)
    # and with nothing holding them back, two at once still both finish (they deadlocked before)
    jobs = [subprocess.Popen(whiten, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    assert [job.wait(timeout=120) for job in jobs] == [0, 0]
    assert count(database, "SELECT version FROM whitening WHERE method = 'gem'") == 4
    assert count(database, f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'") == 60


def test_concurrent_inserts_count_each_new_image_once(database):
    from app.store.db import get_engine
    from app.store.images import insert_images

    rows = [{"sha256": f"{i:064x}", "width": 4, "height": 3} for i in range(16)]
    engine, counted = get_engine(), {}
    first = engine.connect()
    first.begin()
    counted["first"] = insert_images(first, 1, rows)[1]

    def second():
        with engine.begin() as conn:
            counted["second"] = insert_images(conn, 1, rows)[1]

    thread = threading.Thread(target=second)
    thread.start()
    wait_for(lambda: count(database, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
             what="the second insert to wait for the first")
    first.commit()
    first.close()
    thread.join(60)
    assert counted == {"first": 16, "second": 0}


# ---- inputs and names -----------------------------------------------------------------------------
def test_labels_are_read_with_a_bound(tmp_path):
    import tracemalloc

    from app.files.labels import LabelsError, read_labels

    tracemalloc.start()
    with pytest.raises(LabelsError, match="larger than 1048576 bytes"):
        read_labels(Path("/dev/zero"), max_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20
    long_line = tmp_path / "long.csv"
    long_line.write_text("filename,label\n" + "x" * 100_000 + ",a\n")
    with pytest.raises(LabelsError, match=":2: line longer than"):
        read_labels(long_line)


def test_strange_names_are_stored_apart_and_reported_on_one_line(database, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    names = [b"bad\xff.jpg", b"bad\\xff.jpg", b"new\nline.jpg"]
    for name in names:
        (folder / os.fsdecode(name)).write_bytes(b"not an image: " + name)  # three contents, three files
    proc = imgsim("ingest", str(folder), "--method", "global", "--quiet")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 3 and len(proc.stderr.strip().splitlines()) == 3, proc.stderr
    assert any("new\\nline.jpg" in line for line in failed)
    stored = {r[0] for r in psycopg.connect(database).execute("SELECT path FROM failures")}
    assert stored == {path_text(folder / os.fsdecode(n)) for n in names}  # three names, three texts


def test_evaluate_without_a_usable_query_fails(engine, lite0_embedders, tmp_path):
    from app.describe.methods import get_method
    from app.evaluation.evaluate import EvaluationError, evaluate
    from tests.helpers import collection, ingest_lite0

    folder = tmp_path / "set"
    make_images(folder, [f"u{i}.png" for i in range(4)], seed=8)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,group\n" + "".join(f"u{i}.png,g{i}\n" for i in range(4)))  # every group alone
    ingest_lite0(engine, lite0_embedders, folder, labels, "global")
    with pytest.raises(EvaluationError, match="nothing to measure"):
        evaluate(engine, collection(engine), folder, labels, LITE0, get_method("global"))


def test_ctrl_c_while_the_command_line_starts_is_one_line(monkeypatch, capsys):
    import app.cli

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "app.cli.main":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        app.cli.main()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_tensorflow_start_up_lines_stay_off_stderr(database, tmp_path):
    store_random_vectors(LITE0, "global", 3)  # something to find
    make_images(tmp_path, ["q.jpg"], seed=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    proc = imgsim("search", str(tmp_path / "q.jpg"), "--method", "global", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# ---- sizes and indexes ----------------------------------------------------------------------------
def test_stored_size_is_the_photos_not_the_reduced_decodes(engine, lite0_embedders, tmp_path):
    from PIL import Image
    from sqlalchemy import text

    from app.describe.methods import get_method
    from tests.helpers import ingestor

    folder = tmp_path / "big"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 1800 wide, 2400 high
    Image.new("RGB", (2400, 1800), (90, 140, 30)).save(folder / "turned.jpg", exif=exif.tobytes())
    Image.new("RGB", (2400, 1800), (20, 40, 200)).save(folder / "plain.jpg")
    ingestor(engine, [LITE0], get_method("global"), embedders=lite0_embedders).run(folder)  # decodes at 1/8
    with engine.connect() as conn:
        sizes = {Path(p).name: (w, h) for p, w, h in conn.execute(text("SELECT f.path, i.width, i.height FROM files f JOIN images i ON i.id = f.image_id"))}
    assert sizes == {"turned.jpg": (1800, 2400), "plain.jpg": (2400, 1800)}


def test_a_bulk_load_drops_its_index_only_while_it_writes(engine, lite0_embedders, tmp_path, caplog, monkeypatch):
    import logging

    from app.describe.methods import get_method
    from tests.helpers import ingestor
    from app.retrieval.search import similar

    url = engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")

    def load(name: str, n: int, seed: int) -> list[tuple[int, bool]]:
        folder = tmp_path / name
        make_images(folder, [f"f{i:02d}.png" for i in range(n)], seed=seed)
        seen = []
        ingestor(engine, [LITE0], get_method("global"), embedders=lite0_embedders).run(
            folder, progress=lambda done, total: seen.append((done, _index_present(url))))
        assert _index_present(url)  # built (again) after the load
        return seen

    # a first load, then one that doubles the table: there before anything is written, gone
    # while batches are written, built after the load
    for seen in (load("first", 20, 12), load("doubling", 20, 13)):
        assert seen[0] == (0, True) and (16, False) in seen
    assert all(present for _, present in load("small", 16, 14))  # 16 new < 40 stored: inserted into the index
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_emb_efficientnet_lite0_global_hnsw")
    monkeypatch.setattr(logging.getLogger("imgsim"), "propagate", True)  # the CLI may have turned it off
    with caplog.at_level("WARNING", logger="imgsim"):
        assert len(similar(1, LITE0.name, 3, "global", engine).hits) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "efficientnet-lite0/global has no HNSW index, so searches scan every row; run `imgsim db check --repair`"]


def test_db_check_finds_and_repairs_rows_a_stopped_job_owes(database):
    from app import api

    store_random_vectors(LITE0, "gem", 60)
    api.whiten(LITE0.name, "gem")
    api.augment(LITE0.name, "gem+w+dba")
    with psycopg.connect(database, autocommit=True) as conn:  # what a job stopped half-way leaves
        conn.execute(f"DELETE FROM {LITE0.table} WHERE method = 'gem+w' AND image_id % 4 = 0")
        conn.execute(f"DELETE FROM {LITE0.table} WHERE method = 'gem+w+dba' AND image_id % 4 = 1")
        conn.execute("DROP INDEX ix_emb_efficientnet_lite0_gem_w_dba_hnsw")
    found = {(f["kind"], f["method"], f["count"]) for f in api.check()}
    assert found == {("rows", "gem+w", 15), ("rows", "gem+w+dba", 15), ("index", "gem+w+dba", 45)}
    assert all(f["repaired"] for f in api.check(repair=True))
    assert api.check() == []
    assert count(database, f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w'") == 60
    assert count(database, f"SELECT count(*) FROM {LITE0.table} WHERE method = 'gem+w+dba'") == 60


def test_path_text_is_one_to_one_and_reversible():
    from app.files.paths import one_line, path_from_text

    names = [b"a\xff.jpg", b"a\\xff.jpg", b"a\\\\xff.jpg", b"plain.jpg", "ü.jpg".encode(), b"x\\y", b"\xc3.jpg"]
    texts = [path_text(os.fsdecode(n)) for n in names]
    assert len(set(texts)) == len(names)
    assert [os.fsencode(path_from_text(t)) for t in texts] == names
    assert one_line("new\nline\t\x1b[31m\u2028.jpg") == "new\\nline\\t\\x1b[31m\\u2028.jpg"


def test_a_search_with_nothing_stored_for_its_method_says_so(database, tmp_path):
    make_images(tmp_path, ["a.png", "b.png", "c.png"], seed=14)
    assert imgsim("ingest", str(tmp_path), "--method", "global", "--quiet").returncode == 0
    proc = imgsim("search", str(tmp_path / "a.png"), "--method", "gem")  # ingested with global, searched with gem
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_line(proc) == ("error: no efficientnet-lite0/gem vectors are stored in collection 'default'; run "
                                "`imgsim ingest FOLDER --model efficientnet-lite0 --method gem` first")


def test_db_check_drops_an_index_a_failed_build_left_invalid(database):
    from app import api

    store_random_vectors(LITE0, "gem", 3)
    with psycopg.connect(database, autocommit=True) as conn:  # a concurrent build that fails leaves it invalid
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY half_built ON {LITE0.table} (method)")
    assert [(f["kind"], f["index"]) for f in api.check()] == [("invalid-index", "half_built")]
    assert [f["repaired"] for f in api.check(repair=True)] == [True]
    assert api.check() == [] and count(database, "SELECT count(*) FROM pg_indexes WHERE indexname = 'half_built'") == 0


def test_a_home_on_a_read_only_file_system_is_refused_in_one_line(tmp_path):
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only file system here (mount needs CAP_SYS_ADMIN); the /sys case covers "
                    "the same check")
    try:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        proc = imgsim("db", "url", env={**env, "IMGSIM_HOME": str(mount_point / "imgsim")})
        assert proc.returncode == 1 and "Read-only file system" in error_line(proc)
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
