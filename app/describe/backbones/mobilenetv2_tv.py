"""MobileNetV2 with torchvision's layout, so its ImageNet checkpoint loads exactly.

Differences from keras.applications.MobileNetV2 that matter for an exact port:
stride-2 convolutions pad one pixel on every side (PyTorch) rather than only
bottom/right, and BatchNorm epsilon is 1e-5.
"""
from __future__ import annotations

BN_EPS = 1e-5
# expansion t, output channels c, repeats n, first stride s
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
LAST_CHANNELS = 1280


def build(input_size: int, include_top: bool = False):
    """Return (model, torch_names): the model outputs the last conv map, or logits with include_top."""
    import keras
    from keras import layers

    names: dict[str, str] = {}

    def conv(x, filters, kernel, stride, prefix, depthwise=False, relu=True, bn_prefix=None):
        lname = prefix.replace(".", "_")
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{lname}_pad")(x)
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, use_bias=False, name=lname)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, use_bias=False, name=lname)(x)
        names[lname] = prefix
        bn_prefix = bn_prefix or prefix
        x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{lname}_bn")(x)
        names[f"{lname}_bn"] = bn_prefix
        return layers.ReLU(6.0, name=f"{lname}_relu")(x) if relu else x

    inputs = keras.Input((None, None, 3))  # any size: the descriptors keep the aspect ratio
    x = conv(inputs, 32, 3, 2, "features.0.0", bn_prefix="features.0.1")
    channels, index = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{index}.conv"
            y, j = x, 0
            if t != 1:
                y = conv(y, channels * t, 1, 1, f"{p}.0.0", bn_prefix=f"{p}.0.1")
                j = 1
            y = conv(y, channels * t, 3, stride, f"{p}.{j}.0", depthwise=True, bn_prefix=f"{p}.{j}.1")
            y = conv(y, c, 1, 1, f"{p}.{j + 1}", relu=False, bn_prefix=f"{p}.{j + 2}")
            x = layers.Add(name=f"features_{index}_add")([x, y]) if stride == 1 and channels == c else y
            channels, index = c, index + 1
    x = conv(x, LAST_CHANNELS, 1, 1, f"features.{index}.0", bn_prefix=f"features.{index}.1")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, name="classifier_1")(x)
        names["classifier_1"] = "classifier.1"
    return keras.Model(inputs, x, name="mobilenetv2_tv"), names
