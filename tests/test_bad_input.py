"""Messy folders: every broken file fails in one line and is recorded; every valid one is stored right."""
import os
import subprocess
import sys

import pytest
from PIL import Image
from sqlalchemy import text

from app.store.images import list_failures
from app.describe.embedder import Embedder
from app.files.images import ImageError, decode, load_image
from app.describe.methods import get_method
from app.describe.registry import get_model
from tests.badinput import bomb_png, exif_oriented, make_bad, make_valid

GLOBAL = get_method("global")
SMALL = get_model("mobilenetv3small")
from tests.helpers import ingestor


@pytest.fixture(scope="module")
def embedders():
    return {f"{SMALL.name}/global": Embedder(SMALL, GLOBAL, pretrained=False)}


def test_messy_folder_ingests_valid_files_and_records_each_bad_one(engine, embedders, tmp_path):
    bad = make_bad(tmp_path)
    valid = make_valid(tmp_path)
    seen = []
    report = ingestor(engine, [SMALL], GLOBAL, embedders=embedders, pretrained=False).run(
        tmp_path, on_failure=seen.append)
    failed = {f.path.name: f.reason for f in report.failed}
    assert set(failed) == bad
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert "too many pixels" in failed["bomb.png"] and "empty" in failed["zero.jpg"]
    assert "not a regular file" in failed["pipe.jpg"] and "symbolic link" in failed["loop_a.jpg"]
    assert report.new_images == len(valid) and len(seen) == len(bad)
    with engine.connect() as conn:
        recorded = {os.path.basename(r["path"]) for r in list_failures(conn)}
        sizes = {os.path.basename(p): (w, h) for p, w, h in conn.execute(text("SELECT f.path, i.width, i.height FROM files f JOIN images i ON i.id = f.image_id"))}
        embedded = conn.execute(text(f"SELECT count(*) FROM {SMALL.table}")).scalar()
    assert recorded == bad
    assert sizes == {os.path.basename(name): size for name, size in valid.items()}
    assert embedded == len(valid)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    image = decode(exif_oriented(orientation), 10**8)
    assert image.mode == "RGB"
    assert image.size == ((60, 40) if orientation <= 4 else (40, 60))


def test_every_mode_becomes_rgb(tmp_path):
    make_valid(tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert load_image(path).mode == "RGB", path


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageError, match="too many pixels: 50000x50000"):
        decode(bomb_png(), max_pixels=120_000_000)
    image = Image.new("RGB", (200, 200))
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    with pytest.raises(ImageError, match="limit 10000"):
        decode(buf.getvalue(), max_pixels=10_000)


def test_bomb_keeps_memory_bounded(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    code = ("import resource, sys; from app.files.images import load_image, ImageError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_image(sys.argv[1])\nexcept ImageError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bomb.png")], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert "too many pixels" in out[0]
    assert int(out[1]) < 50_000  # KiB: far below the 7.5 GB a decoded 50000x50000 RGB image needs


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file_is_a_clear_failure(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(b"\xff\xd8")
    path.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)
