"""Extraction and explanation defaults a user meets first: ``extract`` takes what
``extract_embeddings`` takes, and the default Grad-CAM layer of an extractor is one that works."""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("timm")

from oml_viz.explain import default_target_layer, gradcam_map
from oml_viz.models import ResnetExtractor, ViTExtractor, extract_embeddings

IMAGES = [np.random.default_rng(i).integers(0, 256, (28, 28, 3), dtype=np.uint8) for i in range(5)]


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return ResnetExtractor("resnet18")


def test_extract_takes_the_arguments_of_extract_embeddings():
    method = inspect.signature(ResnetExtractor.extract).parameters
    function = inspect.signature(extract_embeddings).parameters
    assert [p for p in method if p != "self"] == [p for p in function if p not in ("model", "preprocess_model")]
    for name in method:
        if name != "self":
            assert method[name].default == function[name].default, name
            assert method[name].kind == function[name].kind, name


def test_extract_input_size_is_what_the_model_sees(cnn):
    seen = []
    handle = cnn.model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        small = cnn.extract(IMAGES, batch_size=8, input_size=(28, 28), progress=False)
        assert seen == [(28, 28)]
        same = extract_embeddings(cnn, IMAGES, 8, input_size=(28, 28), preprocess_model=cnn.model, progress=False)
        default = cnn.extract(IMAGES, batch_size=8, progress=False)
        assert seen[-1] == (224, 224)  # the model's own size when not given
    finally:
        handle.remove()
    np.testing.assert_allclose(small, same, rtol=1e-5, atol=1e-6)
    assert small.shape == default.shape and not np.allclose(small, default)


def test_default_target_layer_of_an_extractor_is_inside_it(cnn):
    layer = default_target_layer(cnn)  # suggested model.layer4[-1], which the wrapper does not have
    assert layer is cnn.model.layer4[-1]
    assert any(m is layer for m in cnn.modules())
    heat = gradcam_map(cnn, IMAGES[0], target_layer=layer, input_size=(64, 64))
    assert heat.shape == (28, 28) and np.isfinite(heat).all()
    torch.manual_seed(0)
    vit = ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2)
    assert default_target_layer(vit) is vit.model.blocks[-1].norm1


class _Net(nn.Module):
    """A model of the user's own: no ResNet stages, no timm feature info."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_unknown_model_error_names_a_layer_path_that_works():
    net = _Net()
    with pytest.raises(ValueError, match="target_layer") as info:
        default_target_layer(net)
    expr = re.search(r"e\.g\. (model\.get_submodule\('[\w.]+'\))", str(info.value))
    assert expr, str(info.value)
    layer = eval(expr.group(1), {"model": net})  # the suggestion, run as written
    assert isinstance(layer, nn.Module) and any(m is layer for m in net.modules())
    heat = gradcam_map(net, IMAGES[0], target_layer=layer, input_size=(28, 28))
    assert heat.shape == (28, 28) and np.isfinite(heat).all()
