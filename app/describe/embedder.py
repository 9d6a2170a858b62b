"""Backbone + pooling: prepared uint8 arrays in, L2-normalised descriptor rows out."""
from __future__ import annotations

import numpy as np

from app.describe.backends import choose, load_network
from app.describe.methods import QUARTER_TURNS, Method
from app.describe.pooling import gem, region_windows
from app.describe.preprocess import preprocess
from app.describe.registry import ModelSpec
from app.describe.vectors import l2_normalize


MAX_BATCH = 32  # arrays per network call


class Embedder:
    """``backend``: ``auto`` (default: IMGSIM_BACKEND), ``tensorflow`` or ``openvino`` (see
    ``app.describe.backends``); ``network``: one already loaded on that backend."""

    def __init__(self, spec: ModelSpec, method: Method, pretrained: bool = True, backend: str | None = None,
                 network=None):
        self.spec, self.method = spec, method
        self.backend = choose(backend)
        self.network = network or load_network(spec, pretrained, self.backend)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def feature_map(self, batch: np.ndarray) -> np.ndarray:
        return self.network(preprocess(self.spec.preprocess, batch))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 squashed images -> (N, dim) average-pooled unit vectors."""
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self.feature_map(images).mean(axis=(1, 2)))

    def describe(self, prepared: list[list[np.ndarray]], turns: bool = False) -> list[np.ndarray]:
        """Per image (a list of arrays, one per scale): its descriptor rows, (R, dim), row 0 = whole image;
        with ``turns``, followed by its whole-image rows at each of ``QUARTER_TURNS`` (``Method.turned``;
        ``split_turned`` takes them apart). The turned arrays share the network's batches with the
        upright ones where their shapes agree."""
        turned = [turn for arrays in prepared for turn in self.method.turned(arrays)] if turns else []
        if self.method.descriptor.squash:  # one batch each: the turned arrays are smaller
            rows = [v[None] for group in (prepared, turned) if group
                    for v in self.embed(np.stack([arrays[0] for arrays in group]))]
        else:
            maps = self.feature_maps(prepared + turned)
            rows = [self._pool(m) for m in maps[:len(prepared)]] + [self._whole(m) for m in maps[len(prepared):]]
        if not turns:
            return rows
        n = len(QUARTER_TURNS)
        return [np.concatenate([rows[i], *rows[len(prepared) + n * i:len(prepared) + n * (i + 1)]])
                for i in range(len(prepared))]

    def feature_maps(self, prepared: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Feature maps of every image at every scale, computed in batches of arrays of one
        shape (aspect-kept images of the same size share a batch; the others run apart)."""
        maps: list[list] = [[None] * len(arrays) for arrays in prepared]
        by_shape: dict[tuple, list[tuple[int, int]]] = {}
        for i, arrays in enumerate(prepared):
            for scale, array in enumerate(arrays):
                by_shape.setdefault(array.shape, []).append((i, scale))
        for members in by_shape.values():
            for start in range(0, len(members), MAX_BATCH):
                chunk = members[start:start + MAX_BATCH]
                for (i, scale), fmap in zip(chunk, self.feature_map(np.stack([prepared[i][s] for i, s in chunk]))):
                    maps[i][scale] = fmap
        return maps

    def _whole(self, maps: list[np.ndarray]) -> np.ndarray:
        """The whole-image row, (1, dim): each scale's GeM vector, normalised, summed, normalised."""
        return l2_normalize(np.sum([l2_normalize(gem(m))[0] for m in maps], axis=0))

    def _pool(self, maps: list[np.ndarray]) -> np.ndarray:
        whole = self._whole(maps)
        if not self.method.descriptor.regions:
            return whole
        fmap = maps[0]
        regions = [gem(fmap[y0:y1, x0:x1]) for y0, y1, x0, x1 in region_windows(*fmap.shape[:2])]
        return np.concatenate([whole, l2_normalize(np.stack(regions))])


def split_turned(rows: np.ndarray, method: Method) -> tuple[np.ndarray, np.ndarray | None]:
    """An image's rows from ``describe`` -> (its descriptor rows, its turned rows or None)."""
    if not method.turns:
        return rows, None
    n = len(QUARTER_TURNS)
    return rows[:-n], rows[-n:]
