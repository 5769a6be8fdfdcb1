"""Turn user images into the tensor a timm model expects, and maps back into image space.

Every explainer goes through here so that they agree on three things: which module is the
model (extractors are unwrapped), how an image of any size is fitted to the model, and how
the model's own timm data config (mean, std, interpolation) normalises it.

Example:
    >>> x, rgb = prepare_image(model, "cat.jpg")        # doctest: +SKIP
    >>> x.shape, rgb.shape                               # doctest: +SKIP
    (torch.Size([1, 3, 224, 224]), (375, 500, 3))
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from oml_viz.data.images import load_image

_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def unwrap_model(model: Any) -> nn.Module:
    """The timm model inside ``model``: an ``oml_viz.models`` extractor (or any module that
    holds it as ``.model``) is unwrapped; a timm model is returned as it is."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a timm model or an extractor), got {type(model).__name__}")
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not hasattr(model, "forward_features"):
        return inner
    return model


def is_vit(model: nn.Module) -> bool:
    """True for timm vision transformers (a patch embedding followed by token blocks)."""
    return hasattr(model, "patch_embed") and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens")


def model_device(model: nn.Module) -> torch.device:
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


def to_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Any supported image (RGB uint8 array, PIL image, path) as an RGB uint8 (H, W, 3) array."""
    if isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: pass an RGB uint8 array or a PIL image, not a tensor "
                        "(explainers normalise with the model's own data config)")
    try:
        return load_image(image)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from e


def images_to_tensor(model: nn.Module | None, images: Sequence[np.ndarray], size: tuple[int, int],
                     cfg: dict | None = None) -> torch.Tensor:
    """RGB uint8 arrays -> a normalised (B, 3, H, W) float tensor of ``size`` on the CPU.
    ``cfg`` (mean, std, interpolation) defaults to ``model``'s timm data config."""
    cfg = cfg if cfg is not None else data_config(model)  # type: ignore[arg-type]
    resample = _INTERPOLATION.get(str(cfg.get("interpolation", "bicubic")), Image.Resampling.BICUBIC)
    h, w = size
    arr = np.stack([
        np.asarray(Image.fromarray(rgb).resize((w, h), resample), dtype=np.float32) for rgb in images
    ])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).div_(255.0)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


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
