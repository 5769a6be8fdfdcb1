"""Pairwise maps: what in a query and a gallery image made the model find them similar.

- CNNs (and any model, with ``method="gradcam"``): Grad-CAM in both directions; the query's
  map explains ``<f(query), f(gallery)>``, the gallery's map ``<f(gallery), f(query)>``.
- ViTs (``method="tokens"``): patch-token matching. Each image's patch tokens (the output of
  ``forward_features``, prefix tokens dropped) are centred on the image's mean token, so that
  what every patch shares (background, global context) cancels; a patch's score is its best
  dot product with any patch of the other image. Negative scores are cut to zero.

Example:
    >>> import timm
    >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                           num_heads=2, num_classes=0)
    >>> rng = np.random.default_rng(0)
    >>> query_img, gallery_img = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    >>> pair = explain_pair(model, query_img, gallery_img)      # ViT: patch-token matching
    >>> q_rgb, g_rgb = pair.overlays()
    >>> q_rgb.shape, pair.query_map.shape
    ((32, 32, 3), (32, 32))
    >>> fig = pair.plot(); len(fig.axes)
    2
    >>> import matplotlib.pyplot as plt; plt.close(fig)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from oml_viz.explain.attention import token_grid
from oml_viz.explain.gradcam import gradcam_maps
from oml_viz.explain.inputs import (
    is_vit,
    prepare_image,
    resize_map,
    to_rgb,
    unwrap_model,
)
from oml_viz.explain.overlay import overlay_heatmap
from oml_viz.explain.state import preserved_state


@dataclass
class PairExplanation:
    """Maps on both images of a (query, gallery) pair; float32 (H, W) in [0, 1] each."""

    query_map: np.ndarray
    gallery_map: np.ndarray
    query_image: np.ndarray
    gallery_image: np.ndarray
    method: str

    def overlays(self, cmap: Any = "jet", alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """(query, gallery) uint8 RGB overlays, each at its image's size."""
        return (overlay_heatmap(self.query_image, self.query_map, cmap, alpha),
                overlay_heatmap(self.gallery_image, self.gallery_map, cmap, alpha))

    def plot(self, axes: Any = None, cmap: Any = "jet", alpha: float = 0.5) -> Any:
        """Draw both overlays side by side on two matplotlib axes (made when None); returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(6, 3))
        q, g = self.overlays(cmap, alpha)
        for ax, img, title in zip(axes, (q, g), ("query", "gallery")):
            ax.imshow(img)
            ax.set_title(f"{title} ({self.method})", fontsize=9)
            ax.axis("off")
        return axes[0].figure


def _patch_tokens(net: nn.Module, image: Any, name: str) -> tuple[torch.Tensor, tuple[int, int], np.ndarray]:
    x, rgb = prepare_image(net, image, name=name)
    with preserved_state(net):
        net.eval()
        with torch.no_grad():
            feats = net.forward_features(x)
    gh, gw = token_grid(net, x.shape[-2], x.shape[-1])
    if feats.ndim == 4:  # NHWC
        tokens = feats[0].reshape(-1, feats.shape[-1])
    else:
        p = int(net.num_prefix_tokens)
        tokens = feats[0, p:, :]
    if tokens.shape[0] != gh * gw:
        raise ValueError(f"model: {tokens.shape[0]} patch tokens do not match the {gh}x{gw} grid")
    return tokens.float().cpu(), (gh, gw), rgb


def explain_pair(
    model: nn.Module,
    query_img: Any,
    gallery_img: Any,
    method: Literal["auto", "tokens", "gradcam"] | str = "auto",
    **gradcam_kwargs: Any,
) -> PairExplanation:
    """Maps on the query and the gallery image showing what made them similar.

    Args:
        model: a timm model or an ``oml_viz.models`` extractor.
        query_img, gallery_img: RGB uint8 arrays, PIL images or paths, any sizes.
        method: ``"auto"`` (``"tokens"`` for ViTs, ``"gradcam"`` otherwise), ``"tokens"``,
            ``"gradcam"``, or any Grad-CAM method name (``"gradcam++"``, ``"layercam"``...).
        gradcam_kwargs: passed to the Grad-CAM call (``target_layer``, ``input_size``).
    """
    net = unwrap_model(model)
    if method == "auto":
        method = "tokens" if is_vit(net) else "gradcam"
    if method == "tokens":
        if not is_vit(net):
            raise ValueError(f"method='tokens' needs a timm vision transformer, got {type(net).__name__}")
        tq, (qh, qw), q_rgb = _patch_tokens(net, query_img, "query_img")
        tg, (gh, gw), g_rgb = _patch_tokens(net, gallery_img, "gallery_img")
        tq = tq - tq.mean(dim=0, keepdim=True)
        tg = tg - tg.mean(dim=0, keepdim=True)
        sim = tq @ tg.T  # (query patches, gallery patches)
        q_map = sim.amax(dim=1).clamp_min(0).reshape(qh, qw)
        g_map = sim.amax(dim=0).clamp_min(0).reshape(gh, gw)
        return PairExplanation(resize_map(q_map, *q_rgb.shape[:2]), resize_map(g_map, *g_rgb.shape[:2]),
                               q_rgb, g_rgb, "tokens")

    q_rgb, g_rgb = to_rgb(query_img, "query_img"), to_rgb(gallery_img, "gallery_img")
    embs = _embeddings(net, [q_rgb, g_rgb], gradcam_kwargs.get("input_size"))  # each is the other's reference
    maps = gradcam_maps(net, [q_rgb, g_rgb], reference=[embs[1], embs[0]], method=method, **gradcam_kwargs)
    return PairExplanation(maps[0], maps[1], q_rgb, g_rgb, str(method))


def _embeddings(net: nn.Module, rgbs: list[np.ndarray], input_size: Any) -> list[torch.Tensor]:
    out = []
    with preserved_state(net):
        net.eval()
        with torch.no_grad():
            for rgb in rgbs:
                x, _ = prepare_image(net, rgb, input_size)
                out.append(net(x)[0].detach().float().cpu())
    return out
