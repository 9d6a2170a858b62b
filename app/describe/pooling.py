"""Pooling of a backbone's (H, W, C) feature map: pure numpy."""
from __future__ import annotations

import math

import numpy as np


def gem(fmap: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Generalised mean pooling over the spatial axes of an (H, W, C) map."""
    return np.power(np.mean(np.power(np.maximum(fmap, 1e-6), p), axis=(0, 1)), 1.0 / p)


def region_windows(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of 2x2 and 3x3 overlapping grids over an (H, W) feature map."""
    out = []
    for n in (2, 3):
        h, w = max(1, math.ceil(2 * height / (n + 1))), max(1, math.ceil(2 * width / (n + 1)))
        for i in range(n):
            for j in range(n):
                y0 = round(i * (height - h) / max(1, n - 1))
                x0 = round(j * (width - w) / max(1, n - 1))
                out.append((y0, y0 + h, x0, x0 + w))
    return out
