"""Compare the Keras ports with the original networks run in PyTorch (not part of CI).

Step 1, in .venv:            python scripts/check_port_torch.py dump OUT.npz
Step 2, in a venv with torch: python scripts/check_port_torch.py compare OUT.npz
Step 2 loads each checkpoint with torch.load (PyTorch's own reader) and runs the network
with torch.nn.functional: MobileNetV2 exactly as torchvision defines it (symmetric padding,
BatchNorm eps 1e-5), EfficientNet-Lite with TensorFlow "same" padding and eps 1e-3.
It prints the max abs difference of the logits and the top-1 classes of both.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mobilenetv2-tv", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def dump(out: str) -> None:
    sys.path.insert(0, str(ROOT))
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    from app.describe.backbones import build_backbone
    from app.describe.preprocess import preprocess
    from app.describe.registry import get_model
    from app.describe.weights import port_checkpoint_path

    photos = {"coffee": data.coffee(), "chelsea": data.chelsea(), "astronaut": data.astronaut(),
              "rocket": data.rocket(), "china": load_sample_images().images[0]}
    arrays = {}
    for name in MODELS:
        spec = get_model(name)
        size = spec.input_size
        x = preprocess(spec.preprocess, np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR))
                                                   for p in photos.values()]))
        arrays[f"{name}/input"] = x
        arrays[f"{name}/keras"] = build_backbone(spec, include_top=True).predict(x, verbose=0)
        arrays[f"{name}/checkpoint"] = np.array(str(port_checkpoint_path(spec)))
    arrays["photos"] = np.array(list(photos))
    np.savez(out, **arrays)


def compare(path: str) -> None:
    import torch
    import torch.nn.functional as F

    saved = np.load(path)

    def bn(x, sd, p, eps):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, eps)

    def same_pad(x, k, s):
        h, w = x.shape[-2:]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    def mobilenetv2(sd, x):
        x = F.relu6(bn(F.conv2d(x, sd["features.0.0.weight"], stride=2, padding=1), sd, "features.0.1", 1e-5))
        i = 1
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1)]
        cin = 32
        for t, c, n, s in settings:
            for j in range(n):
                stride = s if j == 0 else 1
                p, y, k = f"features.{i}.conv", x, 0
                if t != 1:
                    y = F.relu6(bn(F.conv2d(y, sd[f"{p}.0.0.weight"]), sd, f"{p}.0.1", 1e-5))
                    k = 1
                w = sd[f"{p}.{k}.0.weight"]
                y = F.relu6(bn(F.conv2d(y, w, stride=stride, padding=1, groups=w.shape[0]), sd, f"{p}.{k}.1", 1e-5))
                y = bn(F.conv2d(y, sd[f"{p}.{k + 1}.weight"]), sd, f"{p}.{k + 2}", 1e-5)
                x = x + y if stride == 1 and cin == c else y
                cin, i = c, i + 1
        x = F.relu6(bn(F.conv2d(x, sd[f"features.{i}.0.weight"]), sd, f"features.{i}.1", 1e-5))
        return F.linear(x.mean((2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])

    def lite(sd, x):
        strides = {1: 2, 2: 2, 3: 2, 5: 2}  # first block of these stages strides (stage index)
        x = F.relu6(bn(F.conv2d(same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), sd, "_bn0", 1e-3))
        b, stage_out = 0, None
        stage = -1
        while f"_blocks.{b}._depthwise_conv.weight" in sd:
            p = f"_blocks.{b}"
            out_c = sd[f"{p}._project_conv.weight"].shape[0]
            first = out_c != stage_out
            if first:
                stage += 1
                stage_out = out_c
            stride = strides.get(stage, 1) if first else 1
            y = x
            if f"{p}._expand_conv.weight" in sd:
                y = F.relu6(bn(F.conv2d(y, sd[f"{p}._expand_conv.weight"]), sd, f"{p}._bn0", 1e-3))
            w = sd[f"{p}._depthwise_conv.weight"]
            y = F.relu6(bn(F.conv2d(same_pad(y, w.shape[-1], stride), w, stride=stride, groups=w.shape[0]),
                           sd, f"{p}._bn1", 1e-3))
            y = bn(F.conv2d(y, sd[f"{p}._project_conv.weight"]), sd, f"{p}._bn2", 1e-3)
            x = x + y if stride == 1 and x.shape[1] == out_c else y
            b += 1
        x = F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), sd, "_bn1", 1e-3))
        return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])

    photos = list(saved["photos"])
    for name in MODELS:
        sd = {k: v.float() for k, v in torch.load(str(saved[f"{name}/checkpoint"]), map_location="cpu").items()}
        x = torch.from_numpy(saved[f"{name}/input"]).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            ref = (mobilenetv2 if name == "mobilenetv2-tv" else lite)(sd, x).numpy()
        keras_logits = saved[f"{name}/keras"]
        diff = np.abs(ref - keras_logits).max()
        print(f"{name}: max |logit difference| = {diff:.2e} (logits range {np.abs(ref).max():.1f}); "
              f"top-1 torch {ref.argmax(1).tolist()} keras {keras_logits.argmax(1).tolist()} for {photos}")


if __name__ == "__main__":
    {"dump": dump, "compare": compare}[sys.argv[1]](sys.argv[2])
