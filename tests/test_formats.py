"""Photos as phones and cameras store them: HEIC (written by pillow-heif), AVIF (Pillow), camera RAW
(DNGs written here with tifffile: one with the camera's preview, one without), each held on its side
(EXIF orientation 6), ingested, found by search, their sizes and pixels upright; broken ones fail in
one line."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import LITE0, pattern

GREEN, RED = (10, 200, 10), (200, 30, 30)


def held_on_its_side() -> tuple[Image.Image, bytes]:
    """A 240 x 160 picture, green on the left half, and EXIF saying it was shot turned (6: the
    viewer turns it a quarter clockwise, so green ends on top)."""
    picture = Image.new("RGB", (240, 160), RED)
    picture.paste(GREEN, (0, 0, 120, 160))
    rng = np.random.default_rng(1)  # some texture, so that it has keypoints and a vector of its own
    texture = Image.fromarray(rng.integers(0, 60, (160, 240, 3), dtype=np.uint8))
    picture = Image.blend(picture, texture, 0.25)
    exif = Image.Exif()
    exif[0x0112] = 6
    return picture, exif.tobytes()


def write_dng(path: Path, picture: Image.Image, preview: bool) -> None:
    """A minimal DNG: a CFA mosaic (the sensor's 2x the picture's size), orientation 6, and with
    ``preview`` the picture as the camera's preview in IFD0."""
    import tifffile

    h, w = picture.height, picture.width
    rgb = np.asarray(picture.resize((w * 2, h * 2))).astype(np.uint16) * 16
    cfa = np.zeros((h * 2, w * 2), np.uint16)
    cfa[0::2, 0::2], cfa[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    cfa[1::2, 0::2], cfa[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    mosaic = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50717, "I", 1, 4095, True)]
    dng = [(50706, "B", 4, (1, 4, 0, 0), True), (271, "s", 0, "imgsim", True), (272, "s", 0, "test", True),
           (50708, "s", 0, "imgsim test", True), (274, "H", 1, 6, True),
           (50721, "2i", 9, (10000, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000,
                             10000, 10000), True), (50778, "H", 1, 21, True)]
    with tifffile.TiffWriter(path) as tif:
        if preview:
            tif.write(np.asarray(picture), photometric="rgb", subfiletype=1, subifds=1, extratags=dng, metadata=None)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=mosaic, metadata=None)
        else:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=mosaic + dng, metadata=None)


@pytest.fixture
def library(tmp_path) -> Path:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    picture, exif = held_on_its_side()
    folder = tmp_path / "phone"
    folder.mkdir()
    picture.save(folder / "IMG_0001.HEIC", "HEIF", exif=exif)
    picture.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(folder / "pixel.avif", "AVIF", exif=exif)
    write_dng(folder / "camera.dng", picture.transpose(Image.Transpose.ROTATE_180), preview=True)
    write_dng(folder / "no-preview.DNG", picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), preview=False)
    heic = (folder / "IMG_0001.HEIC").read_bytes()
    (folder / "truncated.heic").write_bytes(heic[: len(heic) // 3])
    (folder / "broken.nef").write_bytes(b"II*\x00" + bytes(200))
    return folder


def test_phone_and_camera_formats_are_read_upright(library):
    from app.files.images import ImageError, load_image, photo_size

    for name, top, size, shown in (("IMG_0001.HEIC", GREEN, (160, 240), (160, 240)),
                                   ("pixel.avif", GREEN, (160, 240), (160, 240)),
                                   ("camera.dng", RED, (160, 240), (320, 480))):  # a RAW: its preview, as large
        image = load_image(library / name)  # as the camera made it; the photo's size: its sensor's
        assert image.size == size and photo_size((library / name).read_bytes()) == shown, name
        x, y = size[0] // 2, size[1] // 8
        near = lambda xy, color: all(abs(a - b) < 70 for a, b in zip(image.getpixel(xy), color))
        assert near((x, y), top) and not near((x, size[1] - y), top), (name, image.getpixel((x, y)))
    demosaiced = load_image(library / "no-preview.DNG")  # half the sensor, turned
    assert demosaiced.size == (160, 240)
    assert photo_size((library / "no-preview.DNG").read_bytes()) == (320, 480)
    for name in ("truncated.heic", "broken.nef"):
        with pytest.raises(ImageError) as failed:
            load_image(library / name)
        assert "\n" not in str(failed.value)


def test_they_are_ingested_and_found_and_broken_ones_fail_in_one_line(engine, library):
    from sqlalchemy import text

    from app import api

    failed = []
    report = api.ingest(library, LITE0.name, "gem", engine=engine, on_failure=failed.append)
    assert report.found == 6 and report.new_images == 4
    assert sorted(Path(f.path).name for f in failed) == ["broken.nef", "truncated.heic"]
    assert all("\n" not in f.reason for f in failed)
    with engine.connect() as conn:
        sizes = {Path(p).name: (w, h) for p, w, h in conn.execute(text(
            "SELECT f.path, i.width, i.height FROM files f JOIN images i ON i.id = f.image_id"))}
    assert sizes == {"IMG_0001.HEIC": (160, 240), "pixel.avif": (160, 240), "camera.dng": (320, 480),
                     "no-preview.DNG": (320, 480)}
    for name in sizes:
        hits = api.similar(library / name, LITE0.name, k=1, method="gem", engine=engine)
        assert Path(hits[0].path).name == name and hits[0].distance < 1e-4


def test_their_thumbnails_are_served(engine, library, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from app import api
    from app.config import get_settings
    from app.web.server import create_app

    api.ingest(library, LITE0.name, "gem+sift", engine=engine)  # local features too: the match view
    monkeypatch.setenv("IMGSIM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    client = TestClient(create_app(engine))
    from sqlalchemy import text

    with engine.connect() as conn:
        ids = {Path(p).name: i for p, i in conn.execute(text("SELECT path, image_id FROM files"))}
    for name, image_id in ids.items():
        thumb = client.get(f"/api/images/{image_id}/thumbnail", params={"size": 120})
        assert thumb.status_code == 200, (name, thumb.text)
        assert Image.open(io.BytesIO(thumb.content)).size == (80, 120), name
    # the match view of a phone's HEIC and a camera's DNG of one scene (shapes, which keep their keypoints)
    scene, exif = pattern(3, (480, 320)), held_on_its_side()[1]
    (tmp_path / "scene").mkdir()
    scene.save(tmp_path / "scene" / "phone.heic", "HEIF", exif=exif)
    write_dng(tmp_path / "scene" / "camera.dng", scene, preview=True)
    api.ingest(tmp_path / "scene", LITE0.name, "gem+sift", engine=engine)
    with engine.connect() as conn:
        a, b = (conn.execute(text("SELECT image_id FROM files WHERE path LIKE :p"), {"p": f"%/scene/{n}"}).scalar()
                for n in ("phone.heic", "camera.dng"))
    pair = client.get(f"/api/images/{a}/matches/{b}", params={"method": "gem+sift"}).json()
    assert pair["inliers"] >= 10 and all(0 <= v <= 1 for line in pair["lines"] for v in line)
    (ax, ay, bx, by) = np.median(np.array(pair["lines"]), axis=0)  # the same place in each frame, as shown
    assert abs(ax - bx) < 0.1 and abs(ay - by) < 0.1
    get_settings.cache_clear()
