"""bf16 inference where the CPU has it (``app.describe.precision``): detected at run time,
switched on only where the check against fp32 holds, fp32 everywhere else. The paths that need
a bf16 CPU are skipped with their reason on one without it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.describe.embedder import Embedder
from app.describe.methods import get_method
from app.describe.precision import MIN_COSINE, agreement, checked_precision, cpu_has_bf16, probe_images
from app.describe.registry import get_model
from tests.test_describe_backends import PHOTOS, _describe

ov = pytest.importorskip("openvino")


def _cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":")[1].split()}


BF16_CPU = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
needs_bf16 = pytest.mark.skipif(not BF16_CPU, reason="this CPU has neither AVX512-BF16 nor AMX: fp32 only")


def test_the_capability_is_the_cpus():
    assert cpu_has_bf16(ov.Core()) == BF16_CPU


def test_the_probe_images_are_fixed_and_varied():
    a, b = probe_images(), probe_images()
    assert a.shape == (4, 240, 320, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert all(image.std() > 30 for image in a) and not np.array_equal(a[0], a[1])


def test_agreement_is_the_lowest_cosine_of_the_gem_vectors():
    maps = (np.random.default_rng(0).random((3, 5, 5, 8)) * np.arange(1, 9) ** 2).astype(np.float32)
    assert agreement(lambda x: maps, lambda x: maps, maps) == pytest.approx(1.0, abs=1e-6)
    worse = maps.copy()
    worse[1] = worse[1][..., ::-1]  # one image's channels swapped
    assert agreement(lambda x: maps, lambda x: worse, maps) < 0.99


def test_without_bf16_or_a_failed_check_fp32_is_kept(tmp_path):
    core, calls = ov.Core(), []

    def failing() -> float:
        calls.append(1)
        return MIN_COSINE - 0.01

    assert checked_precision(core, tmp_path, failing) == "f32"
    assert len(calls) == (1 if BF16_CPU else 0)  # a CPU without bf16 is not checked at all


@needs_bf16
def test_a_passed_check_takes_bf16_and_is_kept(tmp_path):
    calls = []

    def passing() -> float:
        calls.append(1)
        return 0.999

    assert checked_precision(ov.Core(), tmp_path, passing) == "bf16"
    assert checked_precision(ov.Core(), tmp_path, passing) == "bf16" and len(calls) == 1  # read back
    (record,) = tmp_path.glob("precision-*.json")
    record.write_text("not json")
    assert checked_precision(ov.Core(), tmp_path, passing) == "bf16" and len(calls) == 2  # unreadable: again


@needs_bf16
def test_auto_runs_bf16_and_holds_the_photos_vectors(tmp_path_factory, precision):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    photos = sorted(folder.glob("*.jpg"))
    spec, method = get_model("efficientnet-lite0"), get_method("gem")
    precision("auto")
    fast = Embedder(spec, method, backend="openvino")
    precision("f32")
    reference = Embedder(spec, method, backend="openvino")
    assert (fast.network.precision, reference.network.precision) == ("bf16", "f32")
    assert fast.network.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    cosine = (_describe(fast, method, spec, photos) * _describe(reference, method, spec, photos)).sum(axis=1)
    assert cosine.min() >= 0.99, cosine


def test_asked_precisions_are_taken_and_random_weights_stay_fp32(precision):
    spec, method = get_model("efficientnet-lite0"), get_method("global")
    precision("f32")
    assert Embedder(spec, method, backend="openvino").network.precision == "f32"
    precision("auto")
    assert Embedder(spec, method, pretrained=False, backend="openvino").network.precision == "f32"
    precision("bf16")
    assert Embedder(spec, method, pretrained=False, backend="openvino").network.precision == "bf16"
