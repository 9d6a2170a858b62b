"""Edited copies of photos, as people make them: each source photo and its copies resized,
recompressed, cropped, turned a quarter, made grey, brightened and captioned, labelled by their
source (``filename,group``). The set that perceptual-hash duplicate finders are measured on;
deterministic."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps


def _resized(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)


def _cropped(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((w // 10, h // 8, w - w // 10, h - h // 12))


def _captioned(image: Image.Image) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // 12)
    draw.rectangle((0, out.height - size * 3 // 2, out.width, out.height), fill=(0, 0, 0))
    draw.text((size // 2, out.height - size * 5 // 4), "Summer 2026 - with love", fill=(255, 255, 255),
              font=ImageFont.load_default(size=size))
    return out


# name -> (edit, JPEG quality of the copy)
EDITS: dict[str, tuple[Callable[[Image.Image], Image.Image], int]] = {
    "resized": (_resized, 90),
    "recompressed": (lambda image: image, 35),
    "cropped": (_cropped, 90),
    "turned": (lambda image: image.transpose(Image.Transpose.ROTATE_90), 90),
    "grey": (lambda image: ImageOps.grayscale(image).convert("RGB"), 90),
    "brightened": (lambda image: ImageEnhance.Brightness(image).enhance(1.4), 90),
    "captioned": (_captioned, 90),
}


def make_edited_set(sources: list[Path], folder: Path) -> Path:
    """Each source photo (as ``NAME.jpg``) and its edited copies (``NAME-EDIT.jpg``) in
    ``folder``; returns the labels CSV (``filename,group``: the source's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "group"])
        for source in sources:
            with Image.open(source) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            name = source.stem
            image.save(folder / f"{name}.jpg", quality=92)
            writer.writerow([f"{name}.jpg", name])
            for edit, (change, quality) in EDITS.items():
                change(image).save(folder / f"{name}-{edit}.jpg", quality=quality)
                writer.writerow([f"{name}-{edit}.jpg", name])
    return labels
