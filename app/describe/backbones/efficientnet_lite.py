"""EfficientNet-Lite (no squeeze-excite, ReLU6, fixed stem/head) laid out like its PyTorch checkpoints.

The checkpoints come from code that pads like TensorFlow ("same": extra pixel at
bottom/right), so Keras ``padding="same"`` matches. BatchNorm epsilon is 1e-3.
"""
from __future__ import annotations

import math

BN_EPS = 1e-3
# kernel, first stride, expansion, input channels, output channels, repeats (EfficientNet-B0 stages)
STAGES = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
# width multiplier, depth multiplier, input resolution
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260),
            "lite3": (1.2, 1.4, 280), "lite4": (1.4, 1.8, 300)}
STEM, HEAD = 32, 1280


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(index: int, repeats: int, depth: float) -> int:
    # Lite keeps the first and last stage at one block.
    return repeats if index in (0, len(STAGES) - 1) else int(math.ceil(repeats * depth))


def build(variant: str, include_top: bool = False):
    """Return (model, torch_names) for EfficientNet-Lite ``variant`` (lite0..lite4)."""
    import keras
    from keras import layers

    width, depth, size = VARIANTS[variant]
    names: dict[str, str] = {}

    def conv_bn(x, filters, kernel, stride, conv_name, bn_name, depthwise=False, relu=True):
        lname = conv_name.replace(".", "_")
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=lname)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=lname)(x)
        bname = bn_name.replace(".", "_")
        x = layers.BatchNormalization(epsilon=BN_EPS, momentum=0.99, name=bname)(x)
        names[lname], names[bname] = conv_name, bn_name
        return layers.ReLU(6.0, name=f"{bname}_relu")(x) if relu else x

    inputs = keras.Input((None, None, 3))  # any size: the descriptors keep the aspect ratio
    x = conv_bn(inputs, STEM, 3, 2, "_conv_stem", "_bn0")
    block = 0
    for index, (kernel, stride, expand, cin, cout, repeats) in enumerate(STAGES):
        cin = STEM if index == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        for i in range(stage_repeats(index, repeats, depth)):
            p = f"_blocks.{block}"
            s, c = (stride, cin) if i == 0 else (1, cout)
            y = x
            if expand != 1:
                y = conv_bn(y, c * expand, 1, 1, f"{p}._expand_conv", f"{p}._bn0")
            y = conv_bn(y, c * expand, kernel, s, f"{p}._depthwise_conv", f"{p}._bn1", depthwise=True)
            y = conv_bn(y, cout, 1, 1, f"{p}._project_conv", f"{p}._bn2", relu=False)
            x = layers.Add(name=f"_blocks_{block}_add")([x, y]) if s == 1 and c == cout else y
            block += 1
    x = conv_bn(x, HEAD, 1, 1, "_conv_head", "_bn1")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, name="_fc")(x)
        names["_fc"] = "_fc"
    return keras.Model(inputs, x, name=f"efficientnet_{variant}"), names
