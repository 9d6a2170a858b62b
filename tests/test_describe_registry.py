import re

import pytest

from app.describe.registry import MODELS, UnknownModel, get_model, resolve_models

EXPECTED = {
    "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
    "efficientnetb0": 1280, "efficientnetb1": 1280, "efficientnetb2": 1408,
    "vgg16": 512, "vgg19": 512, "inceptionv3": 2048, "inceptionresnetv2": 1536,
    "mobilenetv2": 1280, "mobilenetv3small": 576, "mobilenetv3large": 960,
    "mobilenetv2-tv": 1280, "efficientnet-lite0": 1280, "efficientnet-lite1": 1280, "efficientnet-lite2": 1280,
}


def test_registry_holds_every_model_with_its_dimension():
    assert {name: spec.dim for name, spec in MODELS.items()} == EXPECTED
    assert MODELS["inceptionv3"].input_size == MODELS["inceptionresnetv2"].input_size == 299
    assert [MODELS[f"efficientnet-lite{i}"].input_size for i in range(3)] == [224, 240, 260]


def test_table_names_are_unique_safe_identifiers():
    tables = [spec.table for spec in MODELS.values()]
    assert len(set(tables)) == len(tables)
    assert all(re.fullmatch(r"emb_[a-z0-9_]+", t) for t in tables)


@pytest.mark.parametrize("name", ["resnet50; DROP TABLE images", "RESNET50", "", "emb_resnet50"])
def test_unknown_model_names_fail_in_the_registry(name):
    with pytest.raises(UnknownModel, match="unknown model"):
        get_model(name)


def test_resolve_all_and_lists():
    assert [s.name for s in resolve_models("all")] == list(MODELS)
    assert [s.name for s in resolve_models("vgg16, resnet50")] == ["vgg16", "resnet50"]
