"""Extractors: a timm model that maps images to embeddings, with OML's names.

``ViTExtractor`` and ``ResnetExtractor`` are ``nn.Module`` s whose ``forward`` returns
(B, D) embeddings (L2-normalised when ``normalise_features=True``). The timm model is
``self.model``, built with ``num_classes=0`` so that it returns pooled features; every
keyword argument goes to ``timm.create_model``, so a small ViT for 64 px images is

    >>> vit = ViTExtractor("vit_tiny_patch16_224", img_size=64, patch_size=8, depth=4)
    >>> vit.feat_dim, vit.input_size
    (192, (64, 64))

(192-dim, 3 heads, trainable on a CPU in minutes). ``weights`` is None (random init), a
checkpoint path (``.pt``/``.pth``/``.ckpt``/``.safetensors``, read safely) or
``"pretrained"`` (timm downloads the arch's weights; needs the network).

    >>> import numpy as np, tempfile
    >>> path = vit.save(f"{tempfile.mkdtemp()}/vit.pt"); vit = ViTExtractor.load(path)
    >>> img = np.zeros((48, 64, 3), np.uint8)
    >>> vit.extract([img, img], batch_size=2, progress=False).shape
    (2, 192)
    >>> vit.draw_attention(img).shape
    (48, 64, 3)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oml_viz.errors import InputFileNotFoundError, InputValueError
from oml_viz.models.checkpoint import (
    check_config_value,
    load_extractor,
    load_weights,
    save_extractor,
)
from oml_viz.models.embed import extract_embeddings
from oml_viz.models.preprocess import base_input_size, data_config, is_vit
from oml_viz.models.registry import EXTRACTOR_KINDS, register_extractor

__all__ = ["EXTRACTOR_KINDS", "ResnetExtractor", "TimmExtractor", "ViTExtractor"]


@register_extractor
class TimmExtractor(nn.Module):
    """Any timm model as an embedding extractor (the base of the two named ones).

    Args:
        arch: a timm model name (``timm.list_models()``).
        weights: None (random init), a checkpoint path, or ``"pretrained"`` (timm's weights
            for ``arch``, downloaded).
        normalise_features: L2-normalise the embeddings ``forward`` / ``extract`` return.
        strict: with a checkpoint, refuse weights that do not fit the model exactly.
        **model_kwargs: passed to ``timm.create_model`` (``img_size``, ``patch_size``,
            ``embed_dim``, ``depth``, ``num_heads``, ``reg_tokens``, ``drop_path_rate``...).
            Plain values only, so that :meth:`save` can record them.
    """

    kind = "timm"

    def __init__(self, arch: str, weights: str | os.PathLike | None = None, normalise_features: bool = False,
                 strict: bool = True, **model_kwargs: Any):
        super().__init__()
        import timm

        if "num_classes" in model_kwargs and model_kwargs["num_classes"] != 0:
            raise InputValueError("num_classes: extractors return embeddings, so the timm model is built with num_classes=0")
        model_kwargs.pop("num_classes", None)
        model_kwargs = {k: check_config_value(k, v) for k, v in model_kwargs.items()}
        if not isinstance(arch, str) or not timm.is_model(arch):
            raise InputValueError(f"arch: {arch!r} is not a timm model name (see timm.list_models())")
        pretrained = isinstance(weights, str) and weights == "pretrained"
        if weights is not None and not pretrained and not Path(weights).is_file():
            raise InputFileNotFoundError(f"weights: no checkpoint file at {weights} (or pass weights='pretrained' / None)")
        try:
            self.model = timm.create_model(arch, pretrained=pretrained, num_classes=0, **model_kwargs)
        except TypeError as e:
            raise InputValueError(f"model_kwargs: timm cannot build {arch!r} with {sorted(model_kwargs)}: {e}") from e
        if weights is not None and not pretrained:
            load_weights(self.model, weights, strict=strict)
        self.arch = arch
        self.model_kwargs = dict(model_kwargs)
        self.normalise_features = bool(normalise_features)
        self.weights = None if weights is None else str(weights)
        self._check_kind()

    def _check_kind(self) -> None:
        pass

    # --- embeddings -----------------------------------------------------------------------
    @property
    def feat_dim(self) -> int:
        """Embedding size D."""
        return int(self.model.num_features)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the model takes (``extract`` resizes every image to it)."""
        return base_input_size(self.model)

    @property
    def data_config(self) -> dict:
        """timm's data config of the model: mean, std, interpolation."""
        return data_config(self.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model(x)
        return F.normalize(feats, dim=-1) if self.normalise_features else feats

    def extract(self, images: Sequence[Any] | Any, batch_size: int = 32, device: str | torch.device | None = None,
                *, dataset_root: str | os.PathLike | None = None, input_size: tuple[int, int] | None = None,
                num_workers: int = 0, progress: bool = True) -> np.ndarray:
        """Embeddings of ``images`` (paths / PIL / arrays, or an OML dataframe with ``path`` and
        optional bbox columns): float32 (N, D), normalised when ``normalise_features``.
        ``device`` None = where the model is; the model returns there afterwards. ``input_size``
        (H, W): every image is resized to it (default the model's own size; a CNN given 28 px
        images at ``(28, 28)`` runs in seconds instead of upscaling them to 224 px).
        The arguments are :func:`oml_viz.models.extract_embeddings`'s."""
        return extract_embeddings(self, images, batch_size, device, dataset_root=dataset_root,
                                  input_size=input_size, preprocess_model=self.model, num_workers=num_workers,
                                  progress=progress)

    # --- checkpoints ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write arch, kwargs, ``normalise_features`` and weights (atomic); reload with :meth:`load`."""
        return save_extractor(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> TimmExtractor:
        """Rebuild an extractor saved with :meth:`save`; ``overrides`` replace saved settings."""
        return load_extractor(path, **overrides)

    # --- explanations ---------------------------------------------------------------------
    def gradcam_map(self, img: Any, reference: Any = None, method: str = "gradcam", **kwargs: Any) -> np.ndarray:
        """:func:`oml_viz.explain.gradcam_map` on this model's features."""
        from oml_viz.explain import gradcam_map

        return gradcam_map(self.model, img, reference, method, **kwargs)

    def draw_gradcam(self, img: Any, reference: Any = None, method: str = "gradcam", **kwargs: Any) -> np.ndarray:
        """uint8 (H, W, 3) Grad-CAM overlay (hot = red) of the embedding."""
        from oml_viz.explain import draw_gradcam

        return draw_gradcam(self.model, img, reference, method, **kwargs)

    def explain_pair(self, query_img: Any, gallery_img: Any, **kwargs: Any) -> Any:
        """:func:`oml_viz.explain.explain_pair` with this model."""
        from oml_viz.explain import explain_pair

        return explain_pair(self.model, query_img, gallery_img, **kwargs)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, normalise_features={self.normalise_features}, weights={self.weights!r}"


@register_extractor
class ViTExtractor(TimmExtractor):
    """A timm vision transformer as an extractor; embeddings are its pooled (CLS) features.

    Example (a small ViT for 32 px images, then back from a checkpoint):
        >>> import numpy as np, tempfile
        >>> vit = ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
        >>> path = vit.save(f"{tempfile.mkdtemp()}/vit.pt"); vit = ViTExtractor.load(path)
        >>> vit.draw_attention(np.zeros((20, 30, 3), np.uint8)).shape
        (20, 30, 3)
    """

    kind = "vit"

    def __init__(self, arch: str = "vit_small_patch16_224", weights: str | os.PathLike | None = None,
                 normalise_features: bool = False, strict: bool = True, **model_kwargs: Any):
        super().__init__(arch, weights, normalise_features, strict, **model_kwargs)

    def _check_kind(self) -> None:
        if not is_vit(self.model):
            raise InputValueError(f"arch: {self.arch!r} is not a vision transformer; use ResnetExtractor/TimmExtractor")

    def attention_map(self, img: Any, block: int = -1, head: Any = "mean", rollout: bool = False,
                      **kwargs: Any) -> np.ndarray:
        """:func:`oml_viz.explain.attention_map` on this model."""
        from oml_viz.explain import attention_map

        return attention_map(self.model, img, block, head, rollout, **kwargs)

    def draw_attention(self, img: Any, block: int = -1, head: Any = "mean", rollout: bool = False,
                       **kwargs: Any) -> np.ndarray:
        """uint8 (H, W, 3) attention overlay (hot = red), at the image's size."""
        from oml_viz.explain import draw_attention

        return draw_attention(self.model, img, block, head, rollout, **kwargs)


@register_extractor
class ResnetExtractor(TimmExtractor):
    """A timm CNN (ResNet by default; ConvNeXt, EfficientNet... work too) as an extractor.

    Example (``weights=`` takes a checkpoint file, e.g. ``"resnet50.safetensors"``):
        >>> import numpy as np
        >>> net = ResnetExtractor("resnet18")
        >>> net.draw_gradcam(np.zeros((40, 60, 3), np.uint8), input_size=(64, 96)).shape
        (40, 60, 3)
    """

    kind = "resnet"

    def __init__(self, arch: str = "resnet50", weights: str | os.PathLike | None = None,
                 normalise_features: bool = False, strict: bool = True, **model_kwargs: Any):
        super().__init__(arch, weights, normalise_features, strict, **model_kwargs)

    def _check_kind(self) -> None:
        if is_vit(self.model):
            raise InputValueError(f"arch: {self.arch!r} is a vision transformer; use ViTExtractor")

