"""Fit images to a timm model: its data config, input size, stride and normalised input tensors.

The low-level half of image preprocessing, shared by embedding extraction (``models``) and the
explainers (``explain``, which adds image loading and maps back to image space on top).

Example:
    >>> import numpy as np, timm
    >>> net = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> base_input_size(net), size_multiple(net), is_vit(net)
    ((224, 224), 32, False)
    >>> fit_input_size(net, 100, 200)          # the image's aspect, the model's area and stride
    (160, 320)
    >>> x = images_to_tensor(net, [np.zeros((10, 20, 3), np.uint8)], (32, 64))
    >>> tuple(x.shape), round(float(x[0, 0, 0, 0]), 3)   # black, normalised with ImageNet's mean/std
    ((1, 3, 32, 64), -2.118)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def is_vit(model: nn.Module) -> bool:
    """True for timm vision transformers (a patch embedding followed by token blocks)."""
    return hasattr(model, "patch_embed") and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_model(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` on the model's device, in its floating dtype (half / bfloat16 models work)."""
    for p in model.parameters():
        return x.to(device=p.device, dtype=p.dtype if p.dtype.is_floating_point else x.dtype)
    return x


def data_config(model: nn.Module) -> dict:
    """timm's data config for ``model`` (mean, std, interpolation, input_size), quietly."""
    from timm.data import resolve_data_config

    return resolve_data_config(model=model, verbose=False)


def base_input_size(model: nn.Module) -> tuple[int, int]:
    """The (H, W) the model was built or trained for: a ViT's ``patch_embed.img_size``
    (which follows ``img_size=`` overrides), else the data config's input size."""
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    if size is not None:
        return int(size[0]), int(size[1])
    _, h, w = data_config(model)["input_size"]
    return int(h), int(w)


def size_multiple(model: nn.Module) -> int:
    """The stride that input sides should be multiples of: the patch size for ViTs, the
    last feature stage's reduction for CNNs (32 when timm does not say)."""
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "patch_size", None) is not None:
        return int(max(pe.patch_size))
    info = getattr(model, "feature_info", None)
    try:
        return int(info[-1]["reduction"])
    except (TypeError, KeyError, IndexError):
        return 32


def fit_input_size(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """The (H, W) to feed ``model`` an image of ``height`` x ``width``.

    A ViT without ``dynamic_img_size`` only takes its own size: the image is resized to it
    (the map is resized back, so the aspect is restored). Other models get the image's
    aspect kept, scaled to the area they were trained at, sides rounded to the stride.
    """
    bh, bw = base_input_size(model)
    if is_vit(model) and not getattr(model, "dynamic_img_size", False):
        return bh, bw
    m = size_multiple(model)
    scale = math.sqrt((bh * bw) / float(height * width))
    return max(m, round(height * scale / m) * m), max(m, round(width * scale / m) * m)


def images_to_tensor(model: nn.Module | None, images: Sequence[np.ndarray], size: tuple[int, int],
                     cfg: dict | None = None) -> torch.Tensor:
    """RGB uint8 arrays -> a normalised (B, 3, H, W) float tensor of ``size`` on the CPU.
    ``cfg`` (mean, std, interpolation) defaults to ``model``'s timm data config."""
    if cfg is None:
        if model is None:
            raise ValueError("images_to_tensor: pass a model or its data config (cfg=...)")
        cfg = data_config(model)
    resample = _INTERPOLATION.get(str(cfg.get("interpolation", "bicubic")), Image.Resampling.BICUBIC)
    h, w = size
    arr = np.stack([
        np.asarray(Image.fromarray(rgb).resize((w, h), resample), dtype=np.float32) for rgb in images
    ])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).div_(255.0)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std
