"""A generated corpus of awkward and broken image files (nothing downloaded)."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import pattern


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 50000, height: int = 50000) -> bytes:
    """A tiny PNG whose header declares a huge image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_oriented(orientation: int) -> bytes:
    """A 60x40 JPEG (wider than tall) tagged with an EXIF orientation."""
    image = pattern(orientation, (60, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(image, "JPEG", exif=exif.tobytes())


def make_bad(folder: Path) -> set[str]:
    """Write the broken files; return their names (each must fail)."""
    folder.mkdir(parents=True, exist_ok=True)
    good_jpeg = _save(pattern(1), "JPEG")
    good_png = _save(pattern(2), "PNG")
    files = {
        "zero.jpg": b"",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "corrupt_header.jpg": b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + os.urandom(64) + good_jpeg[200:],
        "text.jpg": b"this is a text file, not a JPEG\n",
        "bogus_chunk.png": good_png[:33] + _png_chunk(b"IDAT", b"garbage, not zlib") + good_png[-12:],
        "bomb.png": bomb_png(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "broken_link.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    os.mkfifo(folder / "pipe.jpg")
    return set(files) | {"broken_link.jpg", "loop_a.jpg", "loop_b.jpg", "pipe.jpg"}


def make_valid(folder: Path) -> dict[str, tuple[int, int]]:
    """Write awkward but valid images; return name -> expected (width, height) after EXIF orientation."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}

    def put(name: str, data: bytes, size: tuple[int, int]):
        (folder / name).write_bytes(data)
        expected[name] = size

    put("one_pixel.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), (1, 1))
    put("tall_3x10000.png", _save(Image.new("L", (3, 10000), 128), "PNG"), (3, 10000))
    put("cmyk.jpg", _save(pattern(3).convert("CMYK"), "JPEG"), (160, 120))
    gray16 = Image.fromarray((np.arange(120 * 160, dtype=np.uint16).reshape(120, 160) * 3))
    put("gray16.png", _save(gray16, "PNG"), (160, 120))
    palette = pattern(4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    put("palette_transparent.png", _save(palette, "PNG", transparency=0), (160, 120))
    rgba = pattern(5).convert("RGBA")
    rgba.putalpha(128)
    put("rgba.webp", _save(rgba, "WEBP"), (160, 120))
    frames = [pattern(10 + i) for i in range(3)]
    put("animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        (160, 120))
    put("multipage.tiff", _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]), (160, 120))
    for orientation in range(1, 9):
        put(f"exif_{orientation}.jpg", exif_oriented(orientation), (60, 40) if orientation <= 4 else (40, 60))
    put("日本語の名前.png", _save(pattern(20), "PNG"), (160, 120))
    put("UPPER.JPG", _save(pattern(21), "JPEG"), (160, 120))
    (folder / "looks_like_image.jpg").mkdir()
    put("looks_like_image.jpg/inside.png", _save(pattern(22), "PNG"), (160, 120))
    raw_name = os.fsencode(folder) + b"/latin1_\xe9t\xe9.png"
    with open(raw_name, "wb") as f:
        f.write(_save(pattern(23), "PNG"))
    expected["latin1_\\xe9t\\xe9.png"] = (160, 120)  # stored with the byte escaped
    return expected
