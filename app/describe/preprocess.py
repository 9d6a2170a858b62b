"""Pixel preprocessing per backbone family (numpy, float32 RGB 0..255 in)."""
from __future__ import annotations

import numpy as np

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def caffe(x: np.ndarray) -> np.ndarray:
    return x[..., ::-1] - _CAFFE_BGR_MEAN


def tf_mode(x: np.ndarray) -> np.ndarray:
    return x / 127.5 - 1.0


def torch_mode(x: np.ndarray) -> np.ndarray:
    return (x / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD


def lite(x: np.ndarray) -> np.ndarray:
    return (x - 127.0) / 128.0


def none(x: np.ndarray) -> np.ndarray:
    """The model rescales internally (keras EfficientNet, MobileNetV3)."""
    return x


PREPROCESSORS = {"caffe": caffe, "tf": tf_mode, "torch": torch_mode, "lite": lite, "none": none}


def preprocess(kind: str, batch: np.ndarray) -> np.ndarray:
    return PREPROCESSORS[kind](np.asarray(batch, dtype=np.float32)).astype(np.float32)
