"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW) through LibRaw (``rawpy``):
the embedded preview the camera wrote where there is one (what the camera showed, and quick),
else a demosaic at half size; turned as the camera was held, and never enlarged (SIFT finds more
in the preview itself than in an enlarged copy; its keypoints are placed in the frame of the
photo's size). The photo's size is the sensor's picture, turned likewise. LibRaw is loaded when
a file may be a RAW one (80 ms a cold search need not pay)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

RAW_EXTENSIONS = {".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"}
# LibRaw's flip -> the turn that shows the picture upright
_TURNS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


class NotRaw(Exception):
    """LibRaw does not read these bytes (most TIFFs: not a camera's)."""


class RawFailure(Exception):
    """A camera RAW file that cannot be used; ``str()`` is the reason."""


def _open(data: bytes):
    import rawpy

    try:
        return rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawFileUnsupportedError, rawpy.LibRawIOError, rawpy.NotSupportedError) as exc:
        raise NotRaw(str(exc)) from None
    except rawpy.LibRawError as exc:
        raise RawFailure(f"corrupt or truncated camera RAW file: {exc}") from None


def raw_size(data: bytes) -> tuple[int, int]:
    """The photo's size as it is shown (the camera's turn applied)."""
    with _open(data) as raw:
        width, height, flip = raw.sizes.width, raw.sizes.height, raw.sizes.flip
    return (height, width) if flip in (5, 6) else (width, height)


def decode_raw(data: bytes, max_pixels: int) -> Image.Image:
    """The picture of a camera RAW file, upright (NotRaw: not one; RawFailure: a broken one)."""
    import rawpy

    with _open(data) as raw:
        width, height, flip = raw.sizes.width, raw.sizes.height, raw.sizes.flip
        if width * height > max_pixels:
            raise RawFailure(f"too many pixels: {width}x{height} (limit {max_pixels}, IMGSIM_MAX_PIXELS)")
        try:
            image = _preview(raw)
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            image = None
        try:
            if image is None:  # LibRaw turns what it demosaics itself
                return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
        except rawpy.LibRawError as exc:
            raise RawFailure(f"corrupt or truncated camera RAW file: {exc}") from None
    turn = _TURNS.get(flip)
    return image.transpose(turn) if turn is not None else image


def _preview(raw) -> Image.Image:
    import rawpy

    thumb = raw.extract_thumb()
    if thumb.format == rawpy.ThumbFormat.JPEG:
        image = Image.open(io.BytesIO(thumb.data))
        image.load()
        return image.convert("RGB")
    array = np.asarray(thumb.data)
    return Image.fromarray(array if array.dtype == np.uint8 else (array >> 8).astype(np.uint8)).convert("RGB")
