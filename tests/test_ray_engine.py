"""The Ray engine against a real local Ray cluster (2 CPUs, one per test session): the same rows
as the local engine on the same folder, bad files included, and the same match graph."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from app import api
from app.describe.methods import get_method
from app.ingestion.engines import EngineError
from app.store.graph import load_graph
from app.store.images import list_failures
from tests.helpers import LITE0, collection, ingestor, make_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_engine(ray_cluster):
    return api.distributor("ray")


def _folder_with_bad_files(folder):
    make_images(folder, ["a.jpg", "b.png", "c.webp", "sub/d.jpg", "e.jpg"])
    (folder / "copy-of-a.jpg").write_bytes((folder / "a.jpg").read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not a png")
    good = (folder / "b.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    return folder


def _by_sha(engine, name: str, method: str) -> dict[str, np.ndarray]:
    """sha256 -> the collection's stored rows of ``method`` (every region), in region order."""
    sql = (f"SELECT i.sha256, e.embedding FROM {LITE0.table} e JOIN images i ON i.id = e.image_id "
           "JOIN collections c ON c.id = i.collection_id WHERE c.name = :c AND e.method = :m "
           "ORDER BY i.sha256, e.region")
    rows: dict[str, list] = {}
    with engine.connect() as conn:
        for sha, vector in conn.execute(text(sql), {"c": name, "m": method}):
            rows.setdefault(sha, []).append(np.asarray(vector.to_list(), np.float32))
    return {sha: np.stack(v) for sha, v in rows.items()}


def _files(engine, name: str) -> dict[str, str]:
    sql = ("SELECT f.path, i.sha256 FROM files f JOIN images i ON i.id = f.image_id "
           "JOIN collections c ON c.id = f.collection_id WHERE c.name = :c")
    with engine.connect() as conn:
        return dict(conn.execute(text(sql), {"c": name}).all())


def _failures(engine, name: str) -> dict[str, str]:
    with engine.connect() as conn:
        return {f["path"]: f["reason"] for f in list_failures(conn, collection(engine, name).id)}


def _run(engine, folder, name, method, lite0_embedders, distributor=None, graph=False):
    return ingestor(engine, [LITE0], method, name, embedders=lite0_embedders, graph=graph,
                    distributor=distributor).run(folder)


def test_ray_engine_stores_what_the_local_engine_stores(engine, lite0_embedders, ray_engine, tmp_path):
    folder = _folder_with_bad_files(tmp_path / "photos")
    here = _run(engine, folder, "here", "global", lite0_embedders)
    there = _run(engine, folder, "ray", "global", lite0_embedders, ray_engine)
    for report in (here, there):
        assert (report.found, report.new_images, report.skipped, len(report.failed)) == (9, 5, 1, 3)
    assert sorted((str(f.path), f.reason) for f in there.failed) == sorted((str(f.path), f.reason) for f in here.failed)
    assert there.embed_seconds[LITE0.name] > 0

    local, distributed = _by_sha(engine, "here", "global"), _by_sha(engine, "ray", "global")
    assert local.keys() == distributed.keys() and len(local) == 5
    for sha, rows in local.items():
        np.testing.assert_allclose(distributed[sha], rows, atol=1e-5)
    assert _files(engine, "ray") == _files(engine, "here") and len(_files(engine, "ray")) == 6
    assert _failures(engine, "ray") == _failures(engine, "here") and len(_failures(engine, "ray")) == 3

    again = _run(engine, folder, "ray", "global", lite0_embedders, ray_engine)
    assert (again.new_images, again.skipped, again.embedded, len(again.failed)) == (0, 6, {}, 3)


def test_ray_engine_computes_the_same_local_features_and_match_graph(engine, lite0_embedders, ray_engine, calendar):
    folder, _ = calendar
    method = get_method("gem+sift")
    here = _run(engine, folder, "here", method, lite0_embedders, graph=True)
    there = _run(engine, folder, "ray", method, lite0_embedders, ray_engine, graph=True)
    assert there.local_features == here.local_features == 18
    assert [g["images"] for g in there.graph] == [g["images"] for g in here.graph] == [18]
    assert there.graph[0]["edges"] == here.graph[0]["edges"] > 18

    local, distributed = _by_sha(engine, "here", "gem"), _by_sha(engine, "ray", "gem")
    for sha, rows in local.items():
        np.testing.assert_allclose(distributed[sha], rows, atol=1e-5)
    assert _graph_by_sha(engine, "ray") == _graph_by_sha(engine, "here")


def _graph_by_sha(engine, name: str) -> dict[str, dict[str, float]]:
    """The collection's match-graph rows with images named by content (ids differ between collections)."""
    with engine.connect() as conn:
        shas = dict(conn.execute(text("SELECT i.id, i.sha256 FROM images i JOIN collections c "
                                      "ON c.id = i.collection_id WHERE c.name = :c"), {"c": name}).all())
        rows = load_graph(conn, LITE0.name, "sift", list(shas))
    return {shas[q]: {shas[n]: round(s, 5) for n, s in row.items()} for q, row in rows.items()}


def test_the_ray_graph_step_fans_out_an_existing_collection(engine, lite0_embedders, ray_engine, calendar):
    """``imgsim index graph --rebuild --engine ray`` recomputes the rows the local job wrote."""
    folder, _ = calendar
    _run(engine, folder, "default", get_method("gem+sift"), lite0_embedders, graph=True)
    before = _graph_by_sha(engine, "default")
    result = api.build_graph(LITE0.name, "gem+sift", rebuild=True, engine=engine, distributor=ray_engine)
    assert result["images"] == 18 and _graph_by_sha(engine, "default") == before


def test_an_unknown_engine_or_a_ray_option_without_ray_is_one_line(tmp_path):
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        api.distributor("spark")
    with pytest.raises(EngineError, match="options of the ray engine"):
        api.distributor("local", workers=2)


def test_an_ingest_on_ray_prints_nothing_of_rays_own_on_stderr(database, tmp_path):
    """Ray's C++ core warned, on stderr, that its restartable actors might not restart: the actors
    do not restart (a failed job is run again), and stderr stays the CLI's."""
    import subprocess
    import sys

    make_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    run = subprocess.run([sys.executable, "-m", "app.cli", "ingest", tmp_path, "--engine", "ray", "--workers", "1",
                          "--method", "gem", "-q"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_a_killed_drivers_cluster_goes_with_it(tmp_path):
    """Ray ends its raylet and GCS with a driver killed by SIGKILL; its agents lingered a minute or
    two. The watchdog the driver starts ends every process of the cluster's session."""
    import signal
    import subprocess
    import sys

    from app.ingestion.raywatch import processes_of
    from tests.helpers import wait_for

    driver = subprocess.Popen([sys.executable, "-c", "import sys, time; from app.ingestion.distributed import start; "
                               "import ray; start(cpus=1); "
                               "print(ray._private.worker._global_node.get_session_dir_path(), flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    session = driver.stdout.readline().strip()
    assert session.startswith("/") and len(wait_for(lambda: len(processes_of(session)) >= 3 and processes_of(session),
                                                   60, "the cluster's processes")) >= 3
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    wait_for(lambda: not processes_of(session), 30, "the cluster's processes to end")
