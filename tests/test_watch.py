"""Folders that follow themselves: ``imgsim watch`` on a real folder and database (a file added,
changed, deleted, a folder moved, 200 files copied at once), and the service as the compose file
starts it (a token made on its first start and kept, the mounted photos followed)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import text

from tests.helpers import make_images, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def stored_names(engine, collection: str = "default") -> set[str]:
    with engine.connect() as conn:
        return {Path(p).name for (p,) in conn.execute(text(
            "SELECT f.path FROM files f JOIN collections c ON c.id = f.collection_id WHERE c.name = :c"),
            {"c": collection})}


def stored_hash(engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT i.sha256 FROM files f JOIN images i ON i.id = f.image_id "
                                 "WHERE f.path LIKE :p"), {"p": f"%/{name}"}).scalar()


def test_watch_follows_a_folder(engine, tmp_path):
    photos = tmp_path / "photos"
    make_images(photos, ["a.jpg", "b.jpg"])
    make_images(photos / "trip", ["t1.jpg", "t2.jpg"], seed=3)
    log = (tmp_path / "watch.log").open("w")
    watcher = subprocess.Popen([sys.executable, "-m", "app.cli", "watch", photos, "--method", "gem", "--every", "60"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stored_names(engine) == {"a.jpg", "b.jpg", "t1.jpg", "t2.jpg"}, 120, "the first sync")
        started = time.monotonic()
        make_images(photos, ["c.jpg"], seed=7)  # added
        wait_for(lambda: "c.jpg" in stored_names(engine), 30, "the added file")
        before = stored_hash(engine, "a.jpg")
        make_images(photos, ["a.jpg"], seed=11)  # changed
        wait_for(lambda: stored_hash(engine, "a.jpg") not in (None, before), 30, "the changed file")
        (photos / "b.jpg").unlink()  # deleted
        wait_for(lambda: "b.jpg" not in stored_names(engine), 30, "the deleted file")
        (photos / "trip").rename(photos / "holiday")  # a folder moved
        wait_for(lambda: _paths_under(engine, "holiday") == {"t1.jpg", "t2.jpg"} and not _paths_under(engine, "trip"),
                 30, "the moved folder")
        assert time.monotonic() - started < 100
        make_images(tmp_path / "slow", ["slow.jpg"], seed=30)  # a file still being copied is read when complete
        data = (tmp_path / "slow" / "slow.jpg").read_bytes()
        with open(photos / "slow.jpg", "wb") as copying:
            for start in range(0, len(data), len(data) // 5 + 1):
                copying.write(data[start:start + len(data) // 5 + 1])
                copying.flush()
                time.sleep(0.3)
        wait_for(lambda: stored_hash(engine, "slow.jpg") is not None, 30, "the copied file")
        assert not any("slow.jpg" in line for line in (tmp_path / "watch.log").read_text().splitlines()), \
            "read while it was being copied"
        syncs = _syncs(tmp_path / "watch.log")
        source = tmp_path / "burst"
        make_images(source, [f"p{i:03}.jpg" for i in range(200)], seed=20)
        shutil.copytree(source, photos / "burst")  # 200 files at once
        wait_for(lambda: len({n for n in stored_names(engine) if n.startswith("p")}) == 200, 120, "the burst")
        assert _syncs(tmp_path / "watch.log") - syncs <= 3, "a burst of files is one sync (or a few), not 200"
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)
    assert "watching" in (tmp_path / "watch.log").read_text()


def _paths_under(engine, folder: str) -> set[str]:
    with engine.connect() as conn:
        return {Path(p).name for (p,) in conn.execute(text("SELECT path FROM files WHERE path LIKE :p"),
                                                      {"p": f"%/{folder}/%"})}


def _syncs(log: Path) -> int:
    return sum("; watching " in line for line in log.read_text().splitlines())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_service_as_compose_starts_it_makes_its_token_and_follows_the_photos(database, tmp_path):
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    photos = tmp_path / "photos"
    make_images(photos, ["a.jpg", "b.jpg", "c.jpg"])
    port = _free_port()
    command = [str(port) if arg == "8000" else str(photos) if arg == "/data/photos" else arg for arg in web["command"]]
    env = {**os.environ, "IMGSIM_HOME": str(tmp_path / "home"), "IMGSIM_API_TOKEN": "",  # as compose sets it
           "PYTHONUNBUFFERED": "1"}  # as the image sets it
    url = f"http://127.0.0.1:{port}"

    def start():
        out = (tmp_path / f"serve-{time.monotonic_ns()}.log")
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", *command], env=env, stdout=out.open("w"),
                                stderr=subprocess.STDOUT)
        wait_for(lambda: _answers(url), 120, "the service")
        return proc, out

    first, log = start()
    try:
        printed = [line for line in log.read_text().splitlines() if "?token=" in line]
        assert len(printed) == 1
        token = printed[0].split("?token=")[1].split()[0]
        assert (tmp_path / "home" / "api-token").read_text().strip() == token
        assert oct((tmp_path / "home" / "api-token").stat().st_mode & 0o777) == "0o600"
        assert httpx.get(f"{url}/api/collections").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        watches = wait_for(lambda: (w := httpx.get(f"{url}/api/watches", headers=auth).json()) and w[0]["syncs"] and w,
                           120, "the photos' first sync")
        assert watches[0]["last"]["found"] == 3 and watches[0]["folder"] == str(photos.resolve())
        make_images(photos, ["d.jpg"], seed=9)
        wait_for(lambda: httpx.get(f"{url}/api/collections", headers=auth).json()[0]["files"] == 4, 60, "a new photo")
    finally:
        first.terminate()
        first.wait(timeout=60)
    again, log = start()
    try:
        assert "?token=" not in log.read_text()  # printed once, on the start that made it
        assert httpx.get(f"{url}/api/collections", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        again.terminate()
        again.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
