"""The arithmetic OpenVINO runs a network in: fp32 (the reference), or bfloat16 where the CPU
has it (AVX512-BF16 or AMX, as OpenVINO's CPU device reports) and a check against fp32 holds.

Rules (fixed, documented defaults):
- ``IMGSIM_INFERENCE_PRECISION=auto`` (default) runs bf16 only where the CPU device lists BF16
  among its capabilities and, on ``PROBES`` fixed images, every GeM vector of the bf16 network
  has a cosine of at least ``MIN_COSINE`` with the fp32 network's. The check runs once per model
  weights, OpenVINO version and CPU; its result is kept beside the converted network. A network
  with random weights (tests) is not checked: it runs fp32 unless bf16 is asked for.
- ``f32`` and ``bf16`` are taken as they are (``bf16`` on a CPU without it: OpenVINO runs fp32).

Why a check: bf16 keeps 8 bits of mantissa, and a network whose activations need more would
drift. On photos, lite0's GeM vectors in bf16 have a cosine of 0.992 at worst (median 0.9987)
with fp32's (docs/performance.md); the verification that follows does not depend on them.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.config import get_settings
from app.describe.pooling import gem
from app.describe.vectors import l2_normalize

MIN_COSINE = 0.98
PROBES = 4  # fixed images the check runs, 320 x 240
BF16 = "bf16"


def cpu_has_bf16(core) -> bool:
    """Whether OpenVINO's CPU device runs bf16 natively here."""
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # a build that does not report it
        return False


def probe_images(count: int = PROBES, width: int = 320, height: int = 240) -> np.ndarray:
    """Fixed pictures with edges, blobs and gradients at several scales (uint8, N x H x W x 3),
    from a seeded generator: the same on every machine."""
    rng = np.random.default_rng(20261205)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        image = np.zeros((height, width, 3), np.float32)
        for cells, weight in ((4, 60.0), (12, 30.0), (40, 30.0)):  # smooth fields at three scales, repeated
            field = rng.random((cells, cells * width // height + 1, 3), dtype=np.float32)
            rows, cols = (y * cells / height).astype(int), (x * cells / width).astype(int)
            image += field[rows, cols] * weight
        for _ in range(6):  # discs and stripes: sharp edges
            cy, cx, r = rng.random(3) * (height, width, height / 3)
            image[(y - cy) ** 2 + (x - cx) ** 2 < r ** 2] = rng.random(3) * 255
        image += 40 * np.sin(x / (3 + rng.random() * 9))[..., None]
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


def agreement(reference: Callable[[np.ndarray], np.ndarray], candidate: Callable[[np.ndarray], np.ndarray],
              images: np.ndarray) -> float:
    """The lowest cosine between the GeM vectors the two networks give the same images
    (``images``: preprocessed as the networks take them)."""
    a = l2_normalize(np.stack([gem(m) for m in reference(images)]))
    b = l2_normalize(np.stack([gem(m) for m in candidate(images)]))
    return float(np.min(np.sum(a * b, axis=1)))


def _record_path(cache: Path, core) -> Path:
    import openvino

    cpu = core.get_property("CPU", "FULL_DEVICE_NAME")
    key = "".join(c if c.isalnum() else "-" for c in f"{openvino.__version__}-{cpu}")[:120]
    return cache / f"precision-{key}.json"


def checked_precision(core, cache: Path | None, check: Callable[[], float]) -> str:
    """``f32`` or ``bf16`` for a pretrained network under ``auto``: bf16 where the CPU has it
    and ``check()`` (the lowest cosine with fp32) is at least MIN_COSINE; the result is kept
    in ``cache`` (the converted network's folder) when it is writable."""
    if not cpu_has_bf16(core):
        return "f32"
    record = _record_path(cache, core) if cache is not None else None
    if record is not None and record.is_file():
        try:
            return BF16 if json.loads(record.read_text())["cosine"] >= MIN_COSINE else "f32"
        except (ValueError, KeyError, OSError):
            pass  # unreadable: check again
    cosine = check()
    if record is not None and os.access(record.parent, os.W_OK):
        with tempfile.NamedTemporaryFile("w", dir=record.parent, delete=False, suffix=".tmp") as f:
            json.dump({"cosine": cosine, "min_cosine": MIN_COSINE}, f)
        os.replace(f.name, record)
    return BF16 if cosine >= MIN_COSINE else "f32"


def asked_precision() -> str:
    return get_settings().inference_precision
