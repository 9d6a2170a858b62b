"""Backbone + pooling as one compiled function: uint8 images in, L2-normalised vectors out."""
from __future__ import annotations

import numpy as np

from app.methods import Method
from app.preprocess import preprocess
from app.registry import ModelSpec


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder:
    def __init__(self, spec: ModelSpec, method: Method, pretrained: bool = True):
        from app.backbones import build_backbone

        import tensorflow as tf

        self.spec, self.method = spec, method
        self.backbone = build_backbone(spec, pretrained=pretrained)
        model = self.backbone

        @tf.function(reduce_retracing=True)
        def features(x):
            fmap = model(x, training=False)
            return tf.reduce_mean(fmap, axis=[1, 2])

        self._features = features

    @property
    def dim(self) -> int:
        return self.spec.dim

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, dim) float32 unit vectors."""
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = preprocess(self.spec.preprocess, images)
        return l2_normalize(self._features(x).numpy())
