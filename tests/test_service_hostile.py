"""``imgsim serve`` against a hostile or careless client (real database, real files): links out of
the allowed roots, stored files replaced, concurrent thumbnails, the decode budget, NUL bytes, big
bodies, foreign Host headers, the token's scheme, the database down, and a fuzz of the API."""
from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import make_images, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def rooted(engine, tmp_path, monkeypatch):
    """A server whose ingest may read below ``root`` only; (client, root, outside)."""
    from app.config import get_settings
    from app.web.server import create_app

    root, outside = tmp_path / "root", tmp_path / "outside"
    make_images(root / "photos", ["a.jpg", "b.png", "c.jpg"])
    make_images(outside, ["secret.jpg", "other.jpg"], seed=5)
    monkeypatch.setenv("IMGSIM_ALLOWED_ROOTS", str(root))
    monkeypatch.setenv("IMGSIM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    client = TestClient(create_app(engine))
    yield client, root, outside
    get_settings.cache_clear()


def ingest(client, folder: Path) -> dict:
    started = client.post("/api/ingest", json={"folder": str(folder), "method": "gem"})
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    done = wait_for(lambda: (j := client.get(f"/api/ingest/{job}").json())["state"] != "running" and j, 300, "the job")
    assert done["state"] == "done", done
    return done


def stored(engine) -> dict[str, tuple[int, str]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return {Path(p).name: (i, s) for p, i, s in conn.execute(text(
            "SELECT f.path, f.image_id, i.sha256 FROM files f JOIN images i ON i.id = f.image_id"))}


def test_links_out_of_an_allowed_root_are_not_read(rooted, engine):
    client, root, outside = rooted
    (root / "photos" / "x.jpg").symlink_to(outside / "secret.jpg")  # a file link out
    (root / "photos" / "elsewhere").symlink_to(outside)  # a folder link out
    (root / "photos" / "inside.jpg").symlink_to(root / "photos" / "a.jpg")  # a link that stays inside
    done = ingest(client, root)
    failed = {Path(f["path"]).name: f["reason"] for f in done["report"]["failed"]}
    assert "outside the allowed roots" in failed["x.jpg"]
    names = stored(engine)
    assert "x.jpg" not in names and "inside.jpg" in names and not any(n in names for n in ("secret.jpg", "other.jpg"))
    assert done["report"]["new"] == 3


def test_a_stored_file_replaced_by_a_link_never_serves_other_pixels(rooted, engine):
    client, root, outside = rooted
    ingest(client, root)
    image_id, _ = stored(engine)["a.jpg"]
    original = client.get(f"/api/images/{image_id}/thumbnail", params={"size": 64})
    assert original.status_code == 200
    target = root / "photos" / "a.jpg"
    kept = target.read_bytes()
    target.unlink()
    target.symlink_to(outside / "secret.jpg")  # swapped in after ingest
    swapped = client.get(f"/api/images/{image_id}/thumbnail", params={"size": 96})
    assert swapped.status_code == 404 and "holds its content" in swapped.json()["error"]
    target.unlink()
    target.write_bytes(kept)  # restored: the thumbnail of the stored content, never cached from the link
    again = client.get(f"/api/images/{image_id}/thumbnail", params={"size": 96})
    assert again.status_code == 200
    thumb = Image.open(io.BytesIO(again.content)).convert("RGB").resize((32, 24))
    truth = Image.open(root / "photos" / "a.jpg").convert("RGB").resize((32, 24))
    assert max(abs(a - b) for p, q in zip(thumb.getdata(), truth.getdata()) for a, b in zip(p, q)) < 60


def test_concurrent_requests_for_a_new_thumbnail_size_all_get_it(rooted, engine, tmp_path):
    client, root, _ = rooted
    ingest(client, root)
    image_id, sha = stored(engine)["b.png"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.get(f"/api/images/{image_id}/thumbnail", params={"size": 200}),
                                range(24)))
    assert [a.status_code for a in answers] == [200] * 24, [a.text for a in answers if a.status_code != 200]
    assert len({a.content for a in answers}) == 1
    folder = tmp_path / "home" / "thumbnails"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(sha)) == [f"{sha}-200.jpg"]


def test_bad_requests_are_refused_in_one_line(rooted):
    client, root, _ = rooted
    assert client.get("/api/search", params={"id": 1, "collection": "\x00"}).status_code == 400
    assert client.get("/api/failures?collection=%00").json() == {"error": "a NUL byte in the request"}
    big = b'{"folder": "' + b"x" * (2 << 20) + b'"}'
    answer = client.post("/api/ingest", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "too large" in answer.json()["error"]
    health = client.get("/api/health")
    assert health.json() == {"status": "ok"}
    for name, value in (("x-content-type-options", "nosniff"), ("x-frame-options", "DENY")):
        assert health.headers[name] == value
    assert "default-src 'self'" in health.headers["content-security-policy"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/search" in docs.text and "cdn" not in docs.text.lower()


def test_hosts_and_the_tokens_scheme(engine):
    from app.web.server import create_app

    client = TestClient(create_app(engine, token="s3cret", allowed_hosts=("127.0.0.1", "localhost")),
                        base_url="http://127.0.0.1")
    assert client.get("/api/collections", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/collections", headers={"Authorization": "bearer s3cret"}).status_code == 200
    assert client.get("/api/collections", headers={"Authorization": "s3cret"}).status_code == 401
    assert client.get("/api/collections", headers={"Authorization": "Basic s3cret"}).status_code == 401
    foreign = client.get("/api/collections", headers={"Authorization": "Bearer s3cret", "Host": "evil.example"})
    assert foreign.status_code == 400 and "Host" in foreign.json()["error"]
    assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200


def test_the_decode_budget_waits_then_refuses():
    from app.web.budget import Full, MemoryBudget

    budget = MemoryBudget(100, wait=0.2)
    with budget.reserve(80):
        with pytest.raises(Full):
            with budget.reserve(30):
                pass
        with budget.reserve(20):
            assert budget.taken == 100
    with budget.reserve(10**9):  # more than all of it: takes all of it, alone
        assert budget.taken == 100
    assert budget.taken == 0


def test_concurrent_large_uploads_stay_within_the_decode_budget(database, tmp_path):
    """A real ``imgsim serve`` with a 300 MB decode budget: four uploads of a 36-megapixel PNG
    at once are decoded one after the other, and the server's peak memory shows it."""
    big = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (40, 90, 160)).save(big)
    make_images(tmp_path / "photos", ["a.jpg", "b.jpg"])
    env = {**os.environ, "IMGSIM_DECODE_MEMORY_MB": "300", "IMGSIM_MAX_PIXELS": "50000000"}
    subprocess.run([sys.executable, "-m", "app.cli", "ingest", tmp_path / "photos", "--method", "gem", "-q"],
                   env=env, check=True, timeout=600)
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(httpx, url), 120, "the server")
        search = lambda _: httpx.post(f"{url}/api/search", files={"file": ("big.png", big.read_bytes(), "image/png")},
                                      data={"method": "gem", "k": "2"}, timeout=300)
        before = _memory_kb(server.pid, "VmRSS")
        search(0)  # one alone: what a decode costs here
        alone = _memory_kb(server.pid, "VmHWM") - before
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(search, range(4)))
        assert all(a.status_code in (200, 503) for a in answers), [a.text for a in answers]
        assert all("Retry-After" in a.headers for a in answers if a.status_code == 503)
        assert sum(a.status_code == 200 for a in answers) >= 1
        peak = _memory_kb(server.pid, "VmHWM") - before
        assert peak < alone * 1.8, (alone, peak)  # four at once did not take four decodes' memory
    finally:
        server.terminate()
        server.wait(timeout=60)


def _up(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_the_database_down_and_back_under_the_service(tmp_path, monkeypatch, caplog):
    """A server of its own: stopped, the service answers 503 in one line and its health says so;
    started again, it answers again."""
    from app.store import migrate
    from app.store.db import embedded_uri, engine_for, stop_embedded
    from app.web.server import create_app

    pgdata = tmp_path / "pgdata"
    os.chmod(tmp_path, 0o755)
    uri = embedded_uri(pgdata)
    monkeypatch.setenv("IMGSIM_RETRY_SECONDS", "1")
    try:
        migrate.upgrade(url=uri)
        client = TestClient(create_app(engine_for(uri)))
        assert client.get("/api/health").json() == {"status": "ok"}
        stop_embedded(pgdata)
        down = client.get("/api/collections")
        assert down.status_code == 503 and down.json() == {"error": "the database cannot be reached; try again later"}
        assert str(pgdata) not in down.text and "5432" not in down.text
        health = client.get("/api/health")
        assert health.status_code == 503 and "cannot be reached" in health.json()["error"]
        assert embedded_uri(pgdata) == uri
        wait_for(lambda: client.get("/api/health").status_code == 200, 60, "the service to see the database")
        assert client.get("/api/collections").status_code == 200

        # an ingest job started while the database is down waits for it, then does its work
        from app.config import get_settings

        make_images(tmp_path / "root" / "photos", ["a.jpg", "b.jpg"])
        monkeypatch.setenv("IMGSIM_ALLOWED_ROOTS", str(tmp_path / "root"))
        monkeypatch.setenv("IMGSIM_RETRY_SECONDS", "60")
        get_settings.cache_clear()
        client = TestClient(create_app(engine_for(uri)))
        stop_embedded(pgdata)
        started = client.post("/api/ingest", json={"folder": str(tmp_path / "root" / "photos"), "method": "gem"})
        assert started.status_code == 202
        caplog.set_level("WARNING", logger="imgsim")
        wait_for(lambda: "retrying" in caplog.text, 60, "the job to wait for the database")  # a fault point
        assert embedded_uri(pgdata) == uri
        job = started.json()["id"]
        done = wait_for(lambda: (j := client.get(f"/api/ingest/{job}").json())["state"] != "running" and j, 120,
                        "the job")
        assert done["state"] == "done" and done["report"]["new"] == 2, done
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)
        from app.config import get_settings

        get_settings.cache_clear()


def test_a_fuzz_of_the_api_gets_no_5xx_and_no_traceback(engine):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from app.web.server import create_app

    client = TestClient(create_app(engine), raise_server_exceptions=False)
    schema = client.get("/openapi.json").json()
    gets = [(path, [p["name"] for p in op.get("parameters", [])]) for path, ops in schema["paths"].items()
            for verb, op in ops.items() if verb == "get"]
    values = st.one_of(st.text(max_size=40), st.integers(-2**63, 2**64).map(str), st.sampled_from(
        ["", "0", "-1", "1e309", "nan", "default", "../../etc/passwd", "\x00", "٥", "５", "%00", "' OR 1=1 --"]))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(gets), st.data())
    def check(endpoint, data):
        path, names = endpoint
        filled = path
        while "{" in filled:
            name = filled[filled.index("{") + 1:filled.index("}")]
            filled = filled.replace("{" + name + "}", data.draw(st.integers(-5, 10**12).map(str)), 1)
        params = {n: data.draw(values) for n in names if "{" + n + "}" not in path and data.draw(st.booleans())}
        answer = client.get(filled, params=params)
        assert answer.status_code < 500, (filled, params, answer.text)
        assert "Traceback" not in answer.text

    check()
    started = time.monotonic()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(["collection", "image", "others", "verdict", "folder", "method"]),
                           st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=5))))
    def check_bodies(body):
        for path in ("/api/decisions", "/api/ingest"):
            answer = client.post(path, json=body)
            assert answer.status_code < 500, (path, body, answer.text)
            assert "Traceback" not in answer.text

    check_bodies()
    assert time.monotonic() - started < 300
