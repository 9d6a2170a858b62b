"""The fast inference backend against the TensorFlow reference, on real photos with real
(offline) weights, and the search path that never imports TensorFlow."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.describe.backends import BackendError, choose, converted_path
from app.describe.embedder import Embedder
from app.describe.methods import get_method
from app.describe.registry import get_model

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "camera", "hubble_deep_field")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    return sorted(folder.glob("*.jpg"))


def _describe(embedder, method, spec, paths):
    from app.files.images import load_image

    prepared = [method.prepare(load_image(p, min_side=method.min_side(spec), longest=method.longest_side()), spec)
                for p in paths]
    return np.concatenate(embedder.describe(prepared))


@pytest.mark.parametrize("model", ["efficientnet-lite0", "mobilenetv2-tv"])
@pytest.mark.parametrize("method_name", ["global", "gem", "rmac"])
def test_openvino_matches_tensorflow_per_image_in_fp32(photos, model, method_name, precision):
    precision("f32")  # the reference's arithmetic (auto takes bf16 where the CPU has it)
    spec, method = get_model(model), get_method(method_name)
    reference = _describe(Embedder(spec, method, backend="tensorflow"), method, spec, photos)
    fast = _describe(Embedder(spec, method, backend="openvino"), method, spec, photos)
    cosine = (reference * fast).sum(axis=1)  # unit rows: whole images and (rmac) regions
    assert reference.shape == fast.shape and cosine.min() >= 0.9999, cosine.min()
    assert converted_path(spec).is_file()  # converted once, cached next to the weights


def test_backend_choice_and_errors(monkeypatch):
    assert choose("auto") == "openvino" and choose("tensorflow") == "tensorflow"
    with pytest.raises(BackendError, match="unknown backend 'onnx'"):
        choose("onnx")
    monkeypatch.setenv("IMGSIM_BACKEND", "TensorFlow")
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        assert choose() == "tensorflow"
    finally:
        get_settings.cache_clear()


SEARCH_WITHOUT_TENSORFLOW = """
import sys, app
hits = app.similar(sys.argv[1], "efficientnet-lite0", k=3, method=sys.argv[2])
assert len(hits) == 3, hits
print("tensorflow" in sys.modules, "keras" in sys.modules, "openvino" in sys.modules,
      "openvino.tools.ovc" in sys.modules)
"""


@pytest.mark.parametrize("method_name", ["global", "verified"])
def test_a_search_with_a_new_photo_on_the_cached_fast_backend_never_imports_tensorflow(database, engine, photos,
                                                                                      lite0_embedders, method_name):
    from tests.helpers import ingestor

    spec = get_model("efficientnet-lite0")
    ingestor(engine, [spec], method_name, embedders=lite0_embedders).run(photos[0].parent)
    Embedder(spec, get_method(method_name), backend="openvino")  # the converted network is cached
    new = photos[0].parent.parent / "new.jpg"
    Image.open(photos[0]).rotate(3).save(new)
    proc = subprocess.run([sys.executable, "-c", SEARCH_WITHOUT_TENSORFLOW, str(new), method_name], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "IMGSIM_BACKEND": "auto"})
    assert proc.returncode == 0, proc.stderr
    # OpenVINO ran without its model converter, from the compiled network it cached
    assert proc.stdout.split() == ["False", "False", "True", "False"]
    assert any((converted_path(spec).parent / "compiled").iterdir())


def test_aspect_kept_descriptors_are_batched_by_shape_with_the_same_rows(photos):
    spec, method = get_model("efficientnet-lite0"), get_method("gem-ms")
    embedder = Embedder(spec, method)
    from app.files.images import load_image

    prepared = [method.prepare(load_image(p, longest=method.longest_side()), spec) for p in photos * 2]
    calls = []
    network = embedder.network
    embedder.network = lambda batch: calls.append(len(batch)) or network(batch)
    batched = embedder.describe(prepared)
    shapes = {a.shape for arrays in prepared for a in arrays}
    assert len(calls) == len(shapes) and sum(calls) == sum(len(arrays) for arrays in prepared)  # one call a shape
    one_by_one = [embedder._pool([network(preprocess_one(spec, a))[0] for a in arrays]) for arrays in prepared]
    for b, o in zip(batched, one_by_one):
        np.testing.assert_allclose(b, o, atol=1e-5)


def preprocess_one(spec, array):
    from app.describe.preprocess import preprocess

    return preprocess(spec.preprocess, array[None])


def test_a_worker_network_takes_its_thread_count_unpinned(monkeypatch):
    """A Ray worker sets IMGSIM_INFERENCE_THREADS to its CPUs: the network keeps to that many
    threads and leaves them unpinned (pinned, every worker would take the same first cores)."""
    from app.config import get_settings

    monkeypatch.setenv("IMGSIM_INFERENCE_THREADS", "1")
    get_settings.cache_clear()
    try:
        compiled = Embedder(get_model("efficientnet-lite0"), get_method("global"), backend="openvino").network.compiled
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
    finally:
        monkeypatch.delenv("IMGSIM_INFERENCE_THREADS")
        get_settings.cache_clear()


@pytest.mark.parametrize("method_name", ["gem+sift", "gem-ms+sift", "global+sift"])
def test_turned_rows_are_the_images_described_turned_by_a_quarter(photos, method_name):
    """A verifying method's rows carry the whole image turned by a quarter each way (at half
    its side) after its descriptor rows, sharing the network's batches: each is what
    describing the turned image on its own gives, and a turn moves the vector far from the
    upright one."""
    from app.describe.embedder import split_turned

    spec, method = get_model("efficientnet-lite0"), get_method(method_name)
    embedder = Embedder(spec, method)
    from app.files.images import load_image

    prepared = [method.prepare(load_image(p, min_side=method.min_side(spec), longest=method.longest_side()), spec)
                for p in photos[:3]]
    rows = embedder.describe(prepared, turns=True)
    for arrays, described in zip(prepared, rows):
        upright, turned = split_turned(described, method)
        quarter = [np.asarray(Image.fromarray(a).resize((round(a.shape[1] * 0.5), round(a.shape[0] * 0.5)),
                                                    Image.BILINEAR, reducing_gap=3.0)) for a in arrays]
        alone = [embedder.describe([[np.rot90(a, k) for a in quarter]])[0][0] for k in (1, 3)]
        assert np.allclose(upright, embedder.describe([arrays])[0], atol=1e-5)
        assert turned.shape == (2, spec.dim) and np.allclose(turned, np.stack(alone), atol=1e-5)
        assert (turned @ upright[0]).max() < 0.95
