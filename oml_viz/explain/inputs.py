"""Turn user images into the tensor a timm model expects, and maps back into image space.

Every explainer goes through here so that they agree on three things: which module is the
model (extractors are unwrapped), how an image of any size is fitted to the model, and how
the model's own timm data config (mean, std, interpolation) normalises it.

Example:
    >>> import numpy as np, timm
    >>> model = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> x, rgb = prepare_image(model, np.zeros((150, 300, 3), np.uint8))
    >>> tuple(x.shape), rgb.shape
    ((1, 3, 160, 320), (150, 300, 3))
    >>> resize_map(np.array([[0.0, 2.0]]), 2, 4).round(2)
    array([[0.  , 0.25, 0.75, 1.  ],
           [0.  , 0.25, 0.75, 1.  ]], dtype=float32)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oml_viz.data.images import load_image
from oml_viz.models.preprocess import (  # re-exported: explainers and panels import them from here
    base_input_size,
    data_config,
    fit_input_size,
    images_to_tensor,
    is_vit,
    model_device,
    size_multiple,
    to_model,
)
from oml_viz.models.registry import is_extractor

__all__ = [
    "base_input_size", "data_config", "fit_input_size", "images_to_tensor", "is_vit", "model_device",
    "prepare_image", "resize_map", "size_multiple", "to_model", "to_rgb", "unit_range", "unwrap_model",
]


def unwrap_model(model: Any) -> nn.Module:
    """The module to explain: an ``oml_viz.models`` extractor gives its timm model (``.model``);
    any other module is explained as it is, whole. A wrapper of your own (a backbone plus a
    head, say) is not unwrapped: its output is the embedding that gets explained. Pass
    ``wrapper.backbone`` yourself to explain the backbone alone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a timm model or an extractor), got {type(model).__name__}")
    if is_extractor(model):
        return model.model
    return model


def to_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Any supported image (RGB uint8 array, PIL image, path) as an RGB uint8 (H, W, 3) array."""
    if isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: pass an RGB uint8 array or a PIL image, not a tensor "
                        "(explainers normalise with the model's own data config)")
    try:
        return load_image(image)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from e


def prepare_image(model: nn.Module, image: Any, input_size: tuple[int, int] | None = None,
                  name: str = "image") -> tuple[torch.Tensor, np.ndarray]:
    """``(x, rgb)``: the (1, 3, h, w) input on the model's device, and the RGB image."""
    rgb = to_rgb(image, name)
    size = tuple(input_size) if input_size is not None else fit_input_size(model, *rgb.shape[:2])
    x = images_to_tensor(model, [rgb], size)  # type: ignore[arg-type]
    return to_model(x, model), rgb


def unit_range(m: np.ndarray | torch.Tensor) -> np.ndarray:
    """Min-max scale to [0, 1] as float32; a constant map (no information) becomes all zeros."""
    a = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)
    a = np.nan_to_num(a.astype(np.float32))
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 1e-5 * max(abs(hi), abs(lo), 1e-30):  # float noise on a flat map is not a signal
        return np.zeros_like(a, dtype=np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def resize_map(m: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D map to (height, width), then scaled to [0, 1]."""
    t = torch.as_tensor(np.asarray(m, dtype=np.float32) if not isinstance(m, torch.Tensor) else m.detach().float().cpu())
    if tuple(t.shape) != (height, width):
        t = F.interpolate(t[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return unit_range(t)
