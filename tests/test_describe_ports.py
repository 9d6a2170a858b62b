"""The offline ImageNet backbones are exact ports: real photos get their real classes.

Photos come from packages (scikit-image's and scikit-learn's sample data), not from the network.
"""
import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from app.describe.backbones import build_backbone
from app.describe.backbones.torch_pickle import UnsupportedCheckpoint, load_state_dict
from app.describe.embedder import Embedder
from app.describe.methods import get_method
from app.describe.preprocess import preprocess
from app.describe.registry import MODELS
from app.describe.weights import port_checkpoint_path, weights_present

OFFLINE = [name for name, spec in MODELS.items() if spec.offline]
# ImageNet class indices
ESPRESSO = 967
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
BUILDINGS = {442, 449, 483, 663, 698, 832}  # bell cote, boathouse, castle, monastery, palace, stupa
ROCKETS = {540, 657, 682, 744}  # drilling platform, missile, obelisk, projectile


def _photos():
    from skimage import data
    from sklearn.datasets import load_sample_images

    samples = load_sample_images().images
    return {"coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(),
            "china": samples[0], "flower": samples[1], "astronaut": data.astronaut()}


@pytest.fixture(scope="module")
def photos():
    return _photos()


def test_offline_weights_are_installed():
    for name in OFFLINE:
        assert weights_present(MODELS[name]), name
        assert port_checkpoint_path(MODELS[name]) is not None, name


@pytest.mark.parametrize("name", OFFLINE)
def test_imagenet_classes_of_real_photos(name, photos):
    spec = MODELS[name]
    model = build_backbone(spec, include_top=True)
    size = spec.input_size
    batch = np.stack([np.asarray(Image.fromarray(photos[k]).resize((size, size), Image.BILINEAR))
                      for k in ("coffee", "chelsea", "china", "rocket")])
    logits = model.predict(preprocess(spec.preprocess, batch), verbose=0)
    top1 = logits.argmax(axis=1)
    top3 = [set(np.argsort(-row)[:3]) for row in logits]
    assert top1[0] == ESPRESSO
    assert top1[1] in CATS
    assert top1[2] in BUILDINGS
    assert top3[3] & ROCKETS
    probs = np.exp(logits[0] - logits[0].max())
    assert probs[ESPRESSO] / probs.sum() > 0.5  # confident, as real weights are


def _augment(image: np.ndarray) -> np.ndarray:
    pil = Image.fromarray(image)
    w, h = pil.size
    pil = pil.crop((int(w * 0.08), int(h * 0.06), int(w * 0.94), int(h * 0.95))).rotate(8, resample=Image.BILINEAR)
    pil = ImageEnhance.Brightness(pil).enhance(1.3)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=20)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.mark.parametrize("name", OFFLINE)
def test_augmented_copy_is_far_closer_than_another_photo(name, photos):
    spec = MODELS[name]
    method = get_method("global")
    embedder = Embedder(spec, method)
    names = list(photos)
    originals = [Image.fromarray(photos[k]) for k in names]
    augmented = [Image.fromarray(_augment(photos[k])) for k in names]
    a = np.concatenate(embedder.describe([method.prepare(im, spec) for im in originals]))
    b = np.concatenate(embedder.describe([method.prepare(im, spec) for im in augmented]))
    distance = 1.0 - a @ b.T
    same = np.diag(distance)
    others = distance + np.eye(len(names)) * 10
    assert np.all(same < others.min(axis=1)), distance
    between = (1.0 - a @ a.T)[~np.eye(len(names), dtype=bool)]
    assert same.mean() < 0.5 * between.mean(), (same, between)


def test_reader_refuses_foreign_globals(tmp_path):
    import pickle
    import struct

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, f)
        f.write(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(UnsupportedCheckpoint, match="refusing to load os.system"):
        load_state_dict(path)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + struct.pack("<q", 0))
    with pytest.raises(UnsupportedCheckpoint, match="zip-format"):
        load_state_dict(zipped)


def test_reader_matches_checkpoint_shapes():
    state = load_state_dict(port_checkpoint_path(MODELS["mobilenetv2-tv"]))
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["features.0.0.weight"].dtype == np.float32
