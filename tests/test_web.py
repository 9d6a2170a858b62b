"""The HTTP API and pages of ``imgsim serve`` (FastAPI's TestClient) over a real database with the
calendar photos ingested by the default method: searches, records, thumbnails, the verified
correspondences, duplicates, and every kind of bad request answered as a 4xx JSON error."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.badinput import bomb_png
from tests.helpers import LITE0, fresh_database, ingest_lite0

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(pg_uri, lite0_embedders, calendar):
    from app.store import migrate
    from app.store.db import get_engine
    from app.web.server import create_app

    folder, labels = calendar
    with pytest.MonkeyPatch.context() as patch, fresh_database(pg_uri, patch):
        migrate.upgrade("head")
        engine = get_engine()
        report = ingest_lite0(engine, lite0_embedders, folder, labels, "gem+sift")
        from app.collection.graph import build_graph
        from app.describe.methods import get_method
        from tests.helpers import collection

        build_graph(engine, collection(engine), LITE0, get_method("gem+sift"))
        assert report.new_images == 18
        yield TestClient(create_app(engine)), engine, folder


def _ids_by_name(engine) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return {Path(p).name: i for p, i in conn.execute(text("SELECT path, image_id FROM files"))}


def test_a_search_by_upload_ranks_the_photos_of_the_same_page_first_and_verified(served):
    client, engine, folder = served
    photo = Image.open(folder / "1.jpg")
    new = io.BytesIO()  # a new photo of January: cropped and re-encoded, so not a stored content
    photo.crop((8, 6, photo.width - 10, photo.height - 4)).save(new, "JPEG", quality=80)
    answer = client.post("/api/search", files={"file": ("photo.jpg", new.getvalue(), "image/jpeg")},
                         data={"k": "12"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["resolved"] == "gem+sift" and result["collection"] == "default"
    top = result["hits"][:9]
    assert {Path(h["path"]).stem for h in top} == {str(i) for i in range(1, 10)}
    assert all(h["verified"] and h["inliers"] >= 10 for h in top), top


def test_a_search_by_stored_id_and_its_distance_cut_off(served):
    client, engine, _ = served
    ids = _ids_by_name(engine)
    full = client.get("/api/search", params={"id": ids["10.jpg"], "k": 18}).json()["hits"]
    assert len(full) == 18 and full[0]["id"] == ids["10.jpg"]
    cut = sorted(h["distance"] for h in full)[5]
    within = client.get("/api/search", params={"id": ids["10.jpg"], "k": 18, "max_distance": cut}).json()["hits"]
    assert within and all(h["distance"] <= cut for h in within) and len(within) < 18


def test_records_thumbnails_made_once_and_the_correspondences_of_a_pair(served):
    from app.config import get_settings

    client, engine, folder = served
    ids = _ids_by_name(engine)
    record = client.get(f"/api/images/{ids['2.jpg']}").json()
    assert record["files"][0]["path"] == str(folder / "2.jpg") and record["width"] > 0
    thumb = client.get(f"/api/images/{ids['2.jpg']}/thumbnail", params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    cached = get_settings().home / "thumbnails" / f"{record['sha256']}-128.jpg"
    assert cached.read_bytes() == thumb.content  # made once, then read from disk
    pair = client.get(f"/api/images/{ids['2.jpg']}/matches/{ids['3.jpg']}").json()
    assert pair["inliers"] >= 10 and len(pair["lines"]) == min(pair["inliers"], 400)
    assert all(0 <= v <= 1 for line in pair["lines"] for v in line)
    other_page = client.get(f"/api/images/{ids['2.jpg']}/matches/{ids['12.jpg']}").json()
    assert other_page["inliers"] < pair["inliers"]


def test_duplicates_failures_collections_and_the_pages(served):
    client, engine, _ = served
    ids = _ids_by_name(engine)
    assert client.get("/api/duplicates").json().keys() == {"groups", "exact"}
    assert client.get("/api/collections").json()[0]["images"] == 18
    assert client.get("/api/failures").json() == []
    assert "Which photos show this same thing?" in client.get("/").text
    page = client.get(f"/match/{ids['2.jpg']}/{ids['3.jpg']}")
    assert page.status_code == 200 and f"/api/images/{ids['3.jpg']}/thumbnail" in page.text
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def _group_names(client) -> list[set[str]]:
    groups = client.get("/api/groups").json()["groups"]
    return [{Path(m["path"]).name for m in g["members"]} for g in groups]


def test_the_groups_and_a_persons_decisions_through_the_api(served):
    client, engine, _ = served
    ids = _ids_by_name(engine)
    january, february = {f"{n}.jpg" for n in range(1, 10)}, {f"{n}.jpg" for n in range(10, 19)}
    assert sorted(_group_names(client), key=min) == sorted([january, february], key=min)
    members = client.get("/api/groups").json()["groups"][0]["members"]
    assert all(0.5 <= m["confidence"] <= 1 and m["evidence"] and m["width"] > 0 for m in members)
    others = [ids[n] for n in january - {"9.jpg"}]
    said = client.post("/api/decisions", json={"image": ids["9.jpg"], "others": others, "verdict": "not-same"})
    assert said.status_code == 200 and said.json() == {"pairs": 8, "verdict": "not-same"}
    assert january - {"9.jpg"} in _group_names(client) and january not in _group_names(client)
    page = client.get("/groups")
    assert page.status_code == 200 and "Photos of the same item" in page.text and "not the same" in page.text
    assert client.post("/api/decisions", json={"others": others, "verdict": "same"}).status_code == 400
    assert client.post("/api/decisions", json={"image": 10**9, "others": others, "verdict": "same"}).status_code == 404
    assert client.post("/api/decisions", json={"image": ids["9.jpg"], "others": [], "verdict": "same"}).status_code == 422
    assert client.post("/api/decisions", json={"image": ids["9.jpg"], "others": others, "verdict": "maybe"}).status_code == 422
    client.post("/api/decisions", json={"image": ids["9.jpg"], "others": others, "verdict": "forget"})
    assert january in _group_names(client)
    assert client.get("/duplicates").status_code == 200  # the earlier address of the page


def _upload(client, content: bytes, name: str = "x.jpg"):
    return client.post("/api/search", files={"file": (name, content, "image/jpeg")})


@pytest.mark.parametrize("content, status, message", [
    (b"", 400, "empty upload"),
    (b"hello, not a jpeg", 400, "not a recognised image format"),
    (bomb_png(), 400, "too many pixels"),
])
def test_bad_uploads_are_one_line_json_errors(served, content, status, message):
    answer = _upload(served[0], content)
    assert answer.status_code == status and message in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_a_truncated_upload_and_one_over_the_byte_limit(served, monkeypatch):
    from app.config import get_settings
    from app.web.server import create_app

    client, engine, folder = served
    good = (folder / "4.jpg").read_bytes()
    truncated = _upload(client, good[: len(good) // 3])
    assert truncated.status_code == 400 and truncated.json()["error"]
    monkeypatch.setenv("IMGSIM_MAX_FILE_BYTES", "1000")
    get_settings.cache_clear()
    try:
        small = TestClient(create_app(engine))
        too_large = _upload(small, good)
        assert too_large.status_code == 413 and "more than 1000 bytes" in too_large.json()["error"]
    finally:
        monkeypatch.delenv("IMGSIM_MAX_FILE_BYTES")
        get_settings.cache_clear()


@pytest.mark.parametrize("path, params, status, message", [
    ("/api/images/999999", {}, 404, "image 999999 is not stored"),
    ("/api/images/999999/thumbnail", {}, 404, "not stored"),
    ("/api/images/abc", {}, 422, "image_id"),
    ("/api/images/..%2F..%2Fetc%2Fpasswd/thumbnail", {}, 404, "not found"),
    ("/api/search", {"id": 999999}, 400, "not stored in this collection"),
    ("/api/search", {"id": 1, "collection": "../../etc"}, 404, "collection"),
    ("/api/search", {"id": 1, "model": "x'; DROP TABLE images; --"}, 400, "unknown model"),
    ("/api/search", {"id": 1, "method": "gem+evil"}, 400, "method"),
    ("/api/search", {"id": 1, "k": 0}, 422, "k"),
    ("/api/images/1/matches/2", {"method": "gem"}, 400, "does not verify"),
    ("/api/failures", {"collection": "nope"}, 404, "nope"),
])
def test_unknown_ids_and_hostile_names_are_4xx_json(served, path, params, status, message):
    answer = served[0].get(path, params=params)
    assert answer.status_code == status, answer.text
    assert message.lower() in answer.json()["error"].lower()


def test_no_file_outside_the_stored_images_can_be_read(served):
    client = served[0]
    for path in ("/static/../../config.py", "/static/%2e%2e/%2e%2e/config.py", "/api/images/1/thumbnail/../../../x"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.json() == {"error": "Not Found"}


def test_a_token_is_required_when_one_is_set(served):
    from app.web.server import create_app

    locked = TestClient(create_app(served[1], token="s3cret"))
    assert locked.get("/api/health").status_code == 200
    refused = locked.get("/api/collections")
    assert refused.status_code == 401 and "token" in refused.json()["error"]
    assert locked.get("/api/collections", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert locked.get("/api/collections", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = locked.get("/", params={"token": "s3cret"})
    assert page.status_code == 200 and locked.get("/api/collections").status_code == 200  # the cookie it set


def test_a_server_beyond_localhost_without_a_token_makes_one_and_keeps_it(tmp_path):
    """(The service started that way, as the compose file starts it: tests/test_watch.py.)"""
    from app.web.guards import kept_token

    token, made = kept_token(tmp_path / "home")
    assert made and len(token) >= 32
    assert kept_token(tmp_path / "home") == (token, False)  # the next start finds it
    assert oct((tmp_path / "home" / "api-token").stat().st_mode & 0o777) == "0o600"


def _chromium() -> str:
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium: the browser test drives Debian's chromium (scripts/test installs it with "
                    "apt-get where it can)")
    return found


def test_the_pages_in_a_real_browser(served, tmp_path):
    """Headless Chromium: upload a photo, see ranked thumbnails, go to "more like this", open the
    match view with its correspondence lines, open the duplicates page. Screenshots in out/."""
    import threading

    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from app.web.server import create_app

    client, engine, folder = served
    config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    from tests.helpers import wait_for

    wait_for(lambda: server.started, 60, "the server to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    shots = ROOT / "out"
    shots.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("input[type=file]", str(folder / "12.jpg"))
            hits = page.locator("#results figure.hit")
            expect(hits.first).to_be_visible(timeout=60_000)
            assert hits.count() >= 9 and page.locator("#results figure.hit.verified").count() >= 9
            # polled from here: the page's content security policy forbids the eval of wait_for_function
            wait_for(lambda: page.evaluate("[...document.querySelectorAll('#results img')]"
                                           ".every(i => i.complete && i.naturalWidth > 0)"), 60, "the thumbnails")
            page.screenshot(path=str(shots / "search.png"), full_page=True)
            hits.nth(1).locator("a.more").click()
            expect(page.locator("#results a.why").first).to_be_visible(timeout=60_000)
            page.locator("#results a.why").first.click()
            expect(page.locator("#verdict")).to_contain_text("verified correspondences", timeout=60_000)
            inliers = int(page.locator("#verdict").inner_text().split()[0])
            assert inliers >= 10, page.locator("#verdict").inner_text()
            wait_for(lambda: page.evaluate("document.querySelectorAll('.match svg line').length")
                     == min(inliers, 400), 60, "the correspondence lines")
            page.screenshot(path=str(shots / "match.png"), full_page=True)
            page.goto(f"http://127.0.0.1:{port}/groups")
            expect(page.locator("h1")).to_contain_text("Photos of the same item")
            sections = page.locator("section.group")
            assert sections.count() == 2 and page.locator("figure.member").count() == 18
            page.screenshot(path=str(shots / "groups.png"), full_page=True)
            member = sections.nth(0).locator("figure.member").nth(0)
            chosen = int(member.get_attribute("data-id"))
            with page.expect_navigation():
                member.locator("button.not-same").click()
            expect(page.locator("figure.member")).to_have_count(17)  # it left its group
            assert page.locator(f"figure.member[data-id='{chosen}']").count() == 0
            with page.expect_navigation():
                page.locator("section.group").nth(1).locator("button.split").click()
            expect(page.locator("section.group")).to_have_count(1)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        with engine.begin() as conn:  # the module's later tests see the photos as ingested
            from sqlalchemy import text
            conn.execute(text("DELETE FROM same_item_decisions"))


def test_an_ingest_of_a_server_folder_only_under_the_allowed_roots_with_progress(served, tmp_path, monkeypatch):
    from app.config import get_settings
    from app.web.server import create_app
    from tests.helpers import make_images, wait_for

    client, engine, _ = served
    refused = client.post("/api/ingest", json={"folder": str(tmp_path)})
    assert refused.status_code == 403 and "IMGSIM_ALLOWED_ROOTS" in refused.json()["error"]
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_images(root / "photos", ["a.jpg", "b.png", "c.jpg"])
    (root / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    make_images(outside, ["secret.jpg"])
    (root / "escape").symlink_to(outside)
    monkeypatch.setenv("IMGSIM_ALLOWED_ROOTS", str(root))
    get_settings.cache_clear()
    try:
        server = TestClient(create_app(engine))
    finally:
        monkeypatch.delenv("IMGSIM_ALLOWED_ROOTS")
        get_settings.cache_clear()
    for folder, status in ((outside, 403), (root / "escape", 403), (root / "missing", 404), ("/", 403)):
        answer = server.post("/api/ingest", json={"folder": str(folder), "collection": "server"})
        assert answer.status_code == status, (folder, answer.text)
    started = server.post("/api/ingest", json={"folder": str(root / "photos"), "collection": "server",
                                               "method": "global"})
    assert started.status_code == 202 and started.json()["state"] == "running"
    job = started.json()["id"]
    assert server.post("/api/ingest", json={"folder": str(root), "collection": "server"}).status_code == 409
    done = wait_for(lambda: (j := server.get(f"/api/ingest/{job}").json())["state"] != "running" and j, 300,
                    "the ingest job")
    assert done["state"] == "done" and (done["report"]["new"], len(done["report"]["failed"])) == (3, 1)
    assert done["done"] == done["total"] == 4
    assert server.get("/api/ingest/99").status_code == 404
    page = server.get("/collections").text
    assert "server" in page and "broken.jpg" in page and f"job {job}" in page


def test_compare_ranks_one_photo_by_several_methods_with_its_metrics(served):
    client, engine, _ = served
    ids = _ids_by_name(engine)
    answer = client.get("/api/compare", params={"id": ids["3.jpg"], "methods": "gem+sift, gem ,nonsense", "k": 8})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["label"] and result["relevant"] == 8
    verified, plain, broken = result["columns"]
    assert (verified["method"], plain["method"]) == ("gem+sift", "gem") and "unknown method" in broken["error"]
    assert verified["ap"] == 1.0 and verified["p_at_k"] == 1.0 and all(h["relevant"] for h in verified["hits"])
    assert ids["3.jpg"] not in [h["id"] for h in verified["hits"]] and len(plain["hits"]) == 8
    assert 0 <= plain["ap"] <= 1
    page = client.get("/compare", params={"id": ids["3.jpg"], "methods": "gem+sift,gem"})
    assert page.status_code == 200 and "AP 1.0" in page.text
    assert client.get("/api/compare", params={"id": ids["3.jpg"], "methods": ",".join(["gem"] * 7)}).status_code == 400


def test_evaluation_over_the_labels_stored_with_the_collection(served):
    client = served[0]
    result = client.get("/api/evaluate", params={"method": "gem+sift"})
    assert result.status_code == 200, result.text
    metrics = result.json()
    assert metrics["n_queries"] == 18 and metrics["map"] == 1.0 and metrics["resolved"] == "gem+sift"
    unlabelled = client.get("/api/evaluate", params={"collection": "server", "method": "global"})
    assert unlabelled.status_code in (404, 409) and unlabelled.json()["error"]
