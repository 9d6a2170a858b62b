"""No Docker engine here: check the compose file against what the app reads."""
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_database_service_is_pg18_with_pgvector_08_healthcheck_and_volume():
    compose = _compose()
    db = compose["services"]["db"]
    image, tag = db["image"].split(":")
    assert image == "pgvector/pgvector"
    version = re.match(r"(\d+)\.(\d+)\.\d+-pg(\d+)", tag)
    assert version and (int(version[1]), int(version[2])) >= (0, 8) and int(version[3]) >= 18
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")
    assert volume[0] in compose["volumes"] and volume[1].startswith("/var/lib/postgresql")


def test_web_service_points_database_url_at_the_db_service(monkeypatch):
    compose = _compose()
    app, db = compose["services"]["web"], compose["services"]["db"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    env = app["environment"]
    monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
    monkeypatch.setenv("IMGSIM_WEIGHTS_DIR", env["IMGSIM_WEIGHTS_DIR"])
    settings = Settings.read()
    url = make_url(settings.database_url)
    assert url.host == "db" and url.port == 5432
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == db["environment"]["POSTGRES_PASSWORD"]
    assert url.database == db["environment"]["POSTGRES_DB"]
    assert str(settings.weights_dir) == "/weights"
    monkeypatch.setenv("IMGSIM_INDEX_MEMORY_MB", env["IMGSIM_INDEX_MEMORY_MB"])
    assert db["shm_size"] == "2gb" and Settings.read().index_memory_mb <= 2048  # a parallel build's graph fits
    assert db["command"] == ["postgres", "-c", "shared_buffers=${DB_SHARED_BUFFERS:-1GB}"]  # not the 128 MB default
    mounts = {m.rsplit(":", 2)[-2] if m.endswith(":ro") else m.rsplit(":", 1)[-1] for m in app["volumes"]}
    assert {"/data/photos", "/weights"} <= mounts


def test_web_service_serves_with_a_token_a_health_check_and_read_only_photos():
    web = _compose()["services"]["web"]
    assert web["command"][:3] == ["serve", "--host", "0.0.0.0"] and "127.0.0.1:8000:8000" in web["ports"]
    assert web["command"][-2:] == ["--watch", "/data/photos"]  # the mounted photos are followed
    assert web["environment"]["IMGSIM_API_TOKEN"] == "${IMGSIM_API_TOKEN:-}"  # .env overrides; else one is made
    assert any(v.endswith(":" + web["environment"]["IMGSIM_HOME"]) for v in web["volumes"])  # ... and kept
    assert "/api/health" in " ".join(web["healthcheck"]["test"])
    assert any(v.endswith(":/data/photos:ro") for v in web["volumes"])
    assert '".[serve]"' in (ROOT / "Dockerfile").read_text()


def test_image_migrates_on_start():
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "ENTRYPOINT" in dockerfile and "requirements-weights.txt" in dockerfile
    assert entry.index("imgsim db upgrade") < entry.index('exec imgsim "$@"')
    assert '[ "$1" = "imgsim" ] && shift' in entry  # `docker compose run --rm web imgsim ingest ...` works


@pytest.mark.slow
def test_an_installed_package_migrates_from_the_folder_the_image_names(database, tmp_path):
    """What the image does: a non-editable install of ``app`` (no alembic.ini beside it) runs
    ``imgsim db upgrade`` from another folder, the migrations found through IMGSIM_MIGRATIONS."""
    import os
    import subprocess
    import sys

    from app.store import migrate

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=600)
    assert not (target / "alembic.ini").exists() and (target / "app" / "store" / "migrate.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("IMGSIM_MIGRATIONS", None)
    run = lambda **extra: subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=tmp_path,
                                         env={**env, **extra}, capture_output=True, text=True, timeout=300)
    missing = run()
    assert missing.returncode == 1 and "set IMGSIM_MIGRATIONS" in missing.stderr and "Traceback" not in missing.stderr
    migrate.downgrade("base")
    done = run(IMGSIM_MIGRATIONS=str(ROOT))
    assert done.returncode == 0, done.stderr
    head = migrate.heads()[0]
    assert done.stdout.strip() == f"database at revision {head}" and migrate.current() == head
