"""Decoding applies EXIF orientation: known corner colours per orientation, not just sizes."""
import io

import numpy as np
import pytest
from PIL import Image

from app.files.images import decode

# EXIF orientation -> the transposition that shows the photo upright (EXIF 2.3, tag 0x0112)
UPRIGHT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
           7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
COLOURS = {"top left": (220, 30, 30), "top right": (30, 220, 30), "bottom left": (30, 30, 220),
           "bottom right": (230, 230, 40)}


def quadrants(width=64, height=48) -> Image.Image:
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    for (rows, cols), colour in zip([(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
                                     (slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))],
                                    COLOURS.values()):
        image[rows, cols] = colour
    return Image.fromarray(image)


def corners(image: Image.Image) -> list[tuple[int, int, int]]:
    a = np.asarray(image).astype(int)
    return [tuple(a[y, x]) for y, x in ((4, 4), (4, -5), (-5, 4), (-5, -5))]


@pytest.mark.parametrize("orientation", UPRIGHT)
def test_each_exif_orientation_is_turned_upright(orientation):
    stored = quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode(buf.getvalue(), max_pixels=10**6)
    expected = stored if UPRIGHT[orientation] is None else stored.transpose(UPRIGHT[orientation])
    assert decoded.size == expected.size
    for got, want in zip(corners(decoded), corners(expected)):
        assert max(abs(g - w) for g, w in zip(got, want)) < 40, (orientation, corners(decoded), corners(expected))
    assert len(set(corners(decoded))) == 4  # four different corners: 5/7 and 6/8 cannot be confused
