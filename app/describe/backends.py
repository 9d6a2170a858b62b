"""Inference backends: the network that turns a preprocessed batch into its last convolutional
feature map.

TensorFlow/Keras is the reference (the models are defined and their weights ported there).
OpenVINO runs the same network converted from the Keras model's ``tf.function`` once, cached next
to the weights under a name that holds the model and its weights' sha256, and run in fp32, or in
bf16 where the CPU has it and a check holds (``app.describe.precision``); a later run reads the
cached network and never imports TensorFlow. ``auto`` picks OpenVINO when it
is installed. Models with random weights (tests) are converted in memory and not cached.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.config import get_settings
from app.describe.precision import agreement, asked_precision, checked_precision, probe_images
from app.describe.preprocess import preprocess
from app.describe.registry import ModelSpec
from app.describe.weights import keras_weights_path, port_checkpoint_path, ported_weights_path, weights_dir

BACKENDS = ("tensorflow", "openvino")
CHOICES = ("auto", *BACKENDS)


class BackendError(ValueError):
    pass


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose(name: str | None = None) -> str:
    """The backend to run: ``name`` (or IMGSIM_BACKEND), ``auto`` = the fastest installed."""
    name = (name or get_settings().backend).lower()
    if name not in CHOICES:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(CHOICES)}")
    if name == "auto":
        return "openvino" if installed("openvino") else "tensorflow"
    if name == "openvino" and not installed("openvino"):
        raise BackendError("the openvino backend is not installed: pip install openvino (or use --backend tensorflow)")
    return name


class TensorFlowNet:
    """The reference: the Keras backbone behind a ``tf.function`` with a dynamic input shape."""

    def __init__(self, spec: ModelSpec, pretrained: bool = True):
        import tensorflow as tf

        from app.describe.backbones import build_backbone

        model = build_backbone(spec, pretrained=pretrained)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def feature_map(x):
            return model(x, training=False)

        self.function = feature_map

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.function(batch).numpy()


class _WithoutConverter(importlib.abc.MetaPathFinder):
    """Refuses ``openvino.tools.ovc`` while ``openvino`` is first imported: the package imports its
    model converter eagerly (and tolerates its absence), which costs 0.13 s of a cold search
    that only reads a cached network. A conversion imports the converter itself."""

    def find_spec(self, name, path, target=None):
        if name == "openvino.tools.ovc":
            raise ImportError("the converter is imported when a model is converted")
        return None


def openvino_runtime():
    """The ``openvino`` module, imported without its model converter when it is not loaded yet."""
    if "openvino" not in sys.modules:
        finder = _WithoutConverter()
        sys.meta_path.insert(0, finder)
        try:
            import openvino  # noqa: F401
        finally:
            sys.meta_path.remove(finder)
    return sys.modules["openvino"]


class OpenVINONet:
    """The network converted to OpenVINO, read from the cache when it is there; run in
    ``self.precision`` (``app.describe.precision``)."""

    def __init__(self, spec: ModelSpec, pretrained: bool = True):
        ov = openvino_runtime()

        config = {}
        if get_settings().inference_threads:  # a worker that shares the machine with others:
            config["INFERENCE_NUM_THREADS"] = get_settings().inference_threads
            config["ENABLE_CPU_PINNING"] = False  # pinned, every such worker would take the same first cores
        source = converted_path(spec) if pretrained else None
        if source is not None and source.is_file():
            if os.access(source.parent, os.W_OK):  # compiled once, then read back: a cold start skips compiling
                config["CACHE_DIR"] = str(source.parent / "compiled")
            source = str(source)
        else:
            from openvino.tools.ovc import convert_model

            source = convert_model(TensorFlowNet(spec, pretrained).function)
            path = converted_path(spec) if pretrained else None  # the build fetched or ported the weights
            if path is not None:
                save_atomically(source, path)
        core = ov.Core()
        self.precision = _precision(core, spec, source, config, pretrained)
        self.compiled = core.compile_model(source, "CPU", {**config, "INFERENCE_PRECISION_HINT": self.precision})
        self.requests = threading.local()  # an infer request runs one batch at a time: one per thread

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self.requests, "request", None)
        if request is None:
            request = self.requests.request = self.compiled.create_infer_request()
        return request.infer(np.ascontiguousarray(batch, np.float32))[0].copy()


def _precision(core, spec: ModelSpec, source, config: dict, pretrained: bool) -> str:
    """The asked precision; under ``auto``, bf16 for a pretrained network where the CPU has it
    and it agrees with fp32 on the probe images (checked once, kept beside the network)."""
    asked = asked_precision()
    if asked != "auto":
        return asked
    if not pretrained:
        return "f32"

    def check() -> float:
        images = preprocess(spec.preprocess, probe_images())
        nets = [core.compile_model(source, "CPU", {**config, "INFERENCE_PRECISION_HINT": p}) for p in ("f32", "bf16")]
        return agreement(*(_runner(net) for net in nets), images)

    path = converted_path(spec)
    return checked_precision(core, path.parent if path is not None else None, check)


def _runner(compiled):
    return lambda batch: compiled.create_infer_request().infer(np.ascontiguousarray(batch, np.float32))[0]


NETS = {"tensorflow": TensorFlowNet, "openvino": OpenVINONet}


def load_network(spec: ModelSpec, pretrained: bool = True, backend: str | None = None):
    """The feature-map network of ``spec`` on the chosen backend."""
    return NETS[choose(backend)](spec, pretrained)


_SHARED: dict[tuple[str, str], object] = {}
_SHARED_LOCK = threading.Lock()


def shared_network(spec: ModelSpec, backend: str | None = None):
    """The process's one pretrained network of ``spec`` on the chosen backend (every method's
    queries share it; loaded once even when threads ask together)."""
    key = (spec.name, choose(backend))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_network(spec, True, key[1])
        return _SHARED[key]


def weights_file(spec: ModelSpec) -> Path | None:
    """The file the model's weights come from (None when it is not there yet)."""
    if spec.offline:
        checkpoint = port_checkpoint_path(spec)
        return checkpoint if checkpoint is not None else (ported_weights_path(spec)
                                                          if ported_weights_path(spec).is_file() else None)
    path = keras_weights_path(spec)
    return path if path.is_file() else None


@lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def converted_path(spec: ModelSpec) -> Path | None:
    """``<weights dir>/converted/<model>-<weights sha256[:16]>/openvino-fp32.xml``; None while
    the weights are absent (the TensorFlow build then fetches or ports them first)."""
    source = weights_file(spec)
    if source is None:
        return None
    st = source.stat()
    digest = _digest(str(source), st.st_size, st.st_mtime_ns)[:16]
    return weights_dir() / "converted" / f"{spec.name}-{digest}" / "openvino-fp32.xml"


def save_atomically(model, path: Path) -> None:
    """Write the converted network beside its final place and rename it in (two runs may race)."""
    ov = openvino_runtime()

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        ov.save_model(model, staged, compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
