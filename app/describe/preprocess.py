"""Pixel preprocessing per backbone family (numpy, float32 RGB 0..255 in).

Each works on the float32 copy ``preprocess`` makes of the uint8 batch, in place where it can:
the same float32 operations in the same order as the plain expressions (so the same values),
without their temporaries (a batch of 16 at 512 px is 50 MB of float32 a pass)."""
from __future__ import annotations

import numpy as np

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def caffe(x: np.ndarray) -> np.ndarray:
    return x[..., ::-1] - _CAFFE_BGR_MEAN


def tf_mode(x: np.ndarray) -> np.ndarray:
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x


def torch_mode(x: np.ndarray) -> np.ndarray:
    x /= np.float32(255.0)
    x -= _IMAGENET_MEAN
    x /= _IMAGENET_STD
    return x


def lite(x: np.ndarray) -> np.ndarray:
    x -= np.float32(127.0)
    x /= np.float32(128.0)
    return x


def none(x: np.ndarray) -> np.ndarray:
    """The model rescales internally (keras EfficientNet, MobileNetV3)."""
    return x


PREPROCESSORS = {"caffe": caffe, "tf": tf_mode, "torch": torch_mode, "lite": lite, "none": none}


def preprocess(kind: str, batch: np.ndarray) -> np.ndarray:
    """A float32 copy of ``batch`` (never the caller's array: the steps work in place), preprocessed."""
    return PREPROCESSORS[kind](np.array(batch, dtype=np.float32)).astype(np.float32, copy=False)
