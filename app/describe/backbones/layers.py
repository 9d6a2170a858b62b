"""Helpers shared by the ported (PyTorch -> Keras) backbones."""
from __future__ import annotations

import numpy as np


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight OIHW -> Keras HWIO."""
    return weight.transpose(2, 3, 1, 0)


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise weight (C,1,H,W) -> Keras (H,W,C,1)."""
    return weight.transpose(2, 3, 0, 1)


def batchnorm(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def assign_weights(model, torch_names: dict[str, str], state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch state dict into ``model``; ``torch_names`` maps Keras layer -> torch prefix.

    Every float tensor of the state dict must be used exactly once.
    """
    import keras

    used: set[str] = set()
    for layer in model.layers:
        prefix = torch_names.get(layer.name)
        if prefix is None:
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            values = [depthwise_kernel(state[f"{prefix}.weight"])]
            keys = [f"{prefix}.weight"]
        elif isinstance(layer, keras.layers.Conv2D):
            values = [conv_kernel(state[f"{prefix}.weight"])]
            keys = [f"{prefix}.weight"]
        elif isinstance(layer, keras.layers.BatchNormalization):
            values = batchnorm(state, prefix)
            keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, keras.layers.Dense):
            values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
        else:
            raise TypeError(f"no weight mapping for layer {layer.name} ({type(layer).__name__})")
        layer.set_weights(values)
        used.update(keys)
    expected = {k for k, v in state.items() if v.dtype.kind == "f"}
    if torch_names and any(v.startswith(("_fc", "classifier")) for v in torch_names.values()):
        unused = expected - used
    else:  # a feature-only model does not use the classifier
        unused = {k for k in expected - used if not k.startswith(("_fc.", "classifier."))}
    if unused:
        raise ValueError(f"checkpoint tensors left unused: {sorted(unused)[:5]}")
