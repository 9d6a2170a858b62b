"""Retrieval methods: how an image becomes the vector(s) stored for a backbone.

A method decides the resize and the pooling of the backbone's last feature map.
Method names are stored in the ``method`` column and select a partial HNSW index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.registry import ModelSpec


class UnknownMethod(KeyError):
    def __str__(self) -> str:
        return f"unknown method {self.args[0]!r}; known methods: {', '.join(METHODS)}"


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    pooling: str  # "avg" or "gem"

    def input_side(self, spec: ModelSpec) -> int:
        """The shorter side the decoder must keep (lets JPEG decoding downscale early)."""
        return spec.input_size

    def prepare(self, image: Image.Image, spec: ModelSpec) -> np.ndarray:
        """RGB image -> uint8 array the backbone takes."""
        size = spec.input_size
        return np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


METHODS: dict[str, Method] = {
    "global": Method("global", "the original study's method: squash to the model's input size "
                     "(224 px for most), global average pooling, cosine distance", "avg"),
}
DEFAULT_METHOD = "global"


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethod(name) from None
