"""Finding and decoding image files: every failure becomes one clear line (``ImageError``)."""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.files.raw import RAW_EXTENSIONS, NotRaw, RawFailure, decode_raw, raw_size

# HEIC/HEIF (phones) through pillow-heif; AVIF is Pillow's own; camera RAW through app.files.raw
HEIF_EXTENSIONS = {".heic", ".heif", ".hif"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif",
                    *HEIF_EXTENSIONS, *RAW_EXTENSIONS}
# Our own pixel limit is checked from the header before decoding; Pillow's stays as a backstop.
Image.MAX_IMAGE_PIXELS = None
# the brands of an ISO media file (bytes 8-12) that are HEIF pictures
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_HEIF = {"ready": False}


def _heif_where_needed(data: bytes) -> None:
    """Pillow reads HEIF once pillow-heif registers itself: done when such a file comes (its
    import is 50 ms a cold search need not pay)."""
    if not _HEIF["ready"] and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _HEIF["ready"] = True


class ImageError(Exception):
    """A file that cannot be used as an image; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class Candidate:
    path: Path  # as found under the root
    error: str | None = None  # set when the entry is unusable before reading (broken link, ...)


def find_images(root: Path) -> list[Candidate]:
    """Image files under ``root`` by extension (any case), sorted; unusable entries carry an error."""
    root = Path(root)
    if root.is_file():
        return [Candidate(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found: list[Candidate] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = Path(dirpath) / name
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.is_symlink() and not path.exists():
                found.append(Candidate(path, "broken or looping symbolic link"))
            elif path.is_dir():
                continue  # a folder with an image-like name is walked, not read
            elif not path.is_file():
                found.append(Candidate(path, "not a regular file (pipe, socket or device)"))
            else:
                found.append(Candidate(path))
    return found


OUTSIDE = "a link to a file outside the allowed roots (IMGSIM_ALLOWED_ROOTS)"


def inside(path: Path, within: tuple[Path, ...]) -> bool:
    """Whether ``path``, its links resolved, lies under one of the (resolved) folders ``within``."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(root) for root in within)


def read_bytes(path: Path, max_bytes: int, within: tuple[Path, ...] | None = None) -> bytes:
    """The file's bytes (at most ``max_bytes``); with ``within``, only a file that lies under one
    of those folders once its links are resolved, as opened (a link swapped in after a check
    is caught: the open file itself is checked)."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise ImageError("empty file (0 bytes)")
        if size <= max_bytes:
            with open(path, "rb") as f:
                if within is not None and not inside(_opened(f, path), within):
                    raise ImageError(OUTSIDE)
                data = f.read(max_bytes + 1)  # bounded even if the file grows after stat()
            size = len(data)
        if size > max_bytes:
            raise ImageError(f"file too large: {size} bytes (limit {max_bytes}, IMGSIM_MAX_FILE_BYTES)")
        return data
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None


def _opened(f, path: Path) -> Path:
    """The file an open descriptor reads (Linux names it under /proc), else ``path``."""
    proc = Path(f"/proc/self/fd/{f.fileno()}")
    return proc if proc.exists() else path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, max_pixels: int, min_side: int | None = None, longest: int | None = None) -> Image.Image:
    """Decode to an RGB image with EXIF orientation applied.

    ``min_side`` and ``longest`` let JPEG decoding downscale in the DCT domain while
    keeping the shorter side >= ``min_side`` and the longer side >= ``longest``.
    """
    raw = _as_raw(data, lambda d: decode_raw(d, max_pixels))
    if raw is not None:
        return to_rgb(raw)
    _heif_where_needed(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"too many pixels: {width}x{height} (limit {max_pixels}, IMGSIM_MAX_PIXELS)")
            if (min_side or longest) and image.format == "JPEG":
                image.draft("RGB", _draft_size(width, height, min_side or 1, longest or 1))
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"corrupt or truncated image: {text}") from None


def _as_raw(data: bytes, read):
    """``read(data)`` where the bytes are a camera RAW file, else None (a TIFF that is not a
    camera's is Pillow's); a broken RAW file is an ImageError."""
    if not _maybe_raw(data):
        return None
    try:
        return read(data)
    except NotRaw:
        return None
    except RawFailure as exc:
        raise ImageError(str(exc)) from None


def _maybe_raw(data: bytes) -> bool:
    """Whether the bytes may be a camera RAW file: TIFF-like (DNG, CR2, NEF, ARW, PEF, SRW; ORF's
    and RW2's own marks), Fujifilm's RAF, Canon's CR3."""
    return data[:2] in (b"II", b"MM") or data[:8] == b"FUJIFILM" or data[4:12] == b"ftypcrx "


# EXIF orientations 5-8 turn the picture a quarter: its width is the stored height.
_QUARTER_TURNS = {5, 6, 7, 8}


def photo_size(data: bytes) -> tuple[int, int]:
    """The photo's full size as it is shown (EXIF orientation applied), read from its header,
    whatever size a reduced decode of it has."""
    size = _as_raw(data, raw_size)
    if size is not None:
        return size
    _heif_where_needed(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt image header: {exc}") from None
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _draft_size(width: int, height: int, min_side: int, longest: int) -> tuple[int, int]:
    # draft() keeps each side >= the request.
    scale = max(min_side / min(width, height), longest / max(width, height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def load_image(path: Path, max_pixels: int = 120_000_000, max_bytes: int = 200 * 1024**2,
               min_side: int | None = None, longest: int | None = None) -> Image.Image:
    return decode(read_bytes(Path(path), max_bytes), max_pixels, min_side, longest)
