"""Build a registered backbone as a Keras model that outputs its last convolutional feature map.

One function per backbone kind: ``keras.applications`` constructors, and the
PyTorch-checkpoint ports whose builders are listed in ``PORTS``.
"""
from __future__ import annotations

import os

from app.describe.registry import ModelSpec
from app.describe.weights import (
    missing,
    port_checkpoint_path,
    ported_weights_path,
    use_weights_dir,
    verify_checkpoint_hash,
)


def _mobilenetv2_tv(size, include_top):
    from app.describe.backbones import mobilenetv2_tv

    return mobilenetv2_tv.build(size, include_top)


def _lite(variant):
    def builder(size, include_top):
        from app.describe.backbones import efficientnet_lite

        return efficientnet_lite.build(variant, include_top)

    return builder


PORTS = {"mobilenetv2_tv": _mobilenetv2_tv, **{f"lite{i}": _lite(f"lite{i}") for i in range(5)}}


def build_backbone(spec: ModelSpec, pretrained: bool = True, include_top: bool = False):
    """The Keras model for ``spec``: conv feature map out, or ImageNet logits with ``include_top`` (ports)."""
    use_weights_dir()
    if spec.kind == "keras":
        if include_top:
            raise ValueError("include_top is only available for the offline ports")
        return _build_keras(spec, pretrained)
    return _build_port(spec, pretrained, include_top)


def _build_keras(spec: ModelSpec, pretrained: bool):
    import keras

    constructor = getattr(keras.applications, spec.constructor)
    try:
        return constructor(include_top=False, weights="imagenet" if pretrained else None,
                           input_shape=(None, None, 3))
    except Exception as exc:  # Keras raises a bare Exception on fetch failure
        if not pretrained:
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise missing(spec, reason) from exc


def _build_port(spec: ModelSpec, pretrained: bool, include_top: bool):
    import keras

    full, torch_names = PORTS[spec.constructor](spec.input_size, True)
    if pretrained:
        _load_port_weights(spec, full, torch_names)
    if include_top:
        return full
    return keras.Model(full.input, full.get_layer("pool").input, name=f"{full.name}_features")


def _load_port_weights(spec: ModelSpec, model, torch_names) -> None:
    """Load the cached Keras weights, converting the PyTorch checkpoint the first time."""
    from app.describe.backbones.layers import assign_weights
    from app.describe.backbones.torch_pickle import load_state_dict

    cached = ported_weights_path(spec)
    if cached.is_file():
        model.load_weights(cached)
        return
    checkpoint = port_checkpoint_path(spec)
    if checkpoint is None:
        raise missing(spec, f"{spec.weights_file} not found")
    verify_checkpoint_hash(checkpoint)
    assign_weights(model, torch_names, load_state_dict(checkpoint))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{cached.name[:-len('.weights.h5')]}.tmp{os.getpid()}.weights.h5")
    model.save_weights(tmp)
    tmp.replace(cached)
