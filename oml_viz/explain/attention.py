"""Attention maps for timm vision transformers: one block, or a rollout over blocks.

timm computes attention with fused SDPA, which never materialises the weights; each attention
module's ``fused_attn`` is switched off for the call (and restored), and the softmaxed weights
are read where timm passes them through ``attn_drop``. That covers timm's ``Attention``,
``AttentionRope`` and EVA attention, so ViT, DeiT (distilled), DINOv2 (registers) and EVA work.

The token grid comes from ``patch_embed`` (never ``sqrt(N)``), so non-square inputs and patch
sizes 8, 14 or 16 need nothing special; the first ``model.num_prefix_tokens`` tokens (CLS,
distillation, registers) are left out of the map.

Which attention row is shown:
- a model pooled by its CLS token (``global_pool == "token"``): the CLS token's row;
- any other model (average / attention pooling, no class token): the fallback is the mean
  attention each patch *receives* from all patch tokens, a proxy for what the pooled
  embedding draws on.

Example:
    >>> import numpy as np, timm
    >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                           num_heads=2, num_classes=0)
    >>> img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    >>> heat = attention_map(model, img)                        # (H, W) float32 in [0, 1]
    >>> heat.shape, heat.dtype
    ((20, 30), dtype('float32'))
    >>> attention_map(model, img, head="max", rollout=True).shape
    (20, 30)
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from oml_viz.checks import check_int
from oml_viz.explain.inputs import is_vit, prepare_image, resize_map, unwrap_model
from oml_viz.explain.overlay import overlay_heatmap
from oml_viz.explain.state import preserved_state

Head = int | Literal["mean", "max"]


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a timm ViT, in forward order (one per block)."""
    root = getattr(model, "blocks", model)
    mods = [m for m in root.modules()
            if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]
    if not mods:
        raise ValueError(f"model: {type(model).__name__} has no timm attention modules "
                         "(attention maps need a timm vision transformer; use gradcam_map for CNNs)")
    return mods


def _uses_cls_row(model: nn.Module) -> bool:
    has_cls = getattr(model, "cls_token", None) is not None
    return has_cls and getattr(model, "global_pool", "token") in ("token", None)


def token_grid(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """Patch-token grid (rows, cols) for an input of ``height`` x ``width`` pixels."""
    pe = model.patch_embed
    if getattr(model, "dynamic_img_size", False) and hasattr(pe, "dynamic_feat_size"):
        gh, gw = pe.dynamic_feat_size((height, width))
    else:
        gh, gw = pe.grid_size
    return int(gh), int(gw)


def _reduce_heads(attn: torch.Tensor, head: Head) -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N)."""
    if head == "mean":
        return attn.mean(dim=1)
    if head == "max":
        return attn.amax(dim=1)
    if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
        n = attn.shape[1]
        if not -n <= int(head) < n:
            raise ValueError(f"head={head} is out of range for {n} attention heads")
        return attn[:, int(head)]
    raise ValueError(f"head must be 'mean', 'max' or a head index, got {head!r}")


def collect_attention(model: nn.Module, x: torch.Tensor, blocks: list[int]) -> dict[int, torch.Tensor]:
    """Run ``model`` on ``x`` once and return the softmaxed attention (B, heads, N, N) of the
    given block indices. The model's mode, ``fused_attn`` flags and hooks are restored."""
    mods = attention_modules(model)
    found: dict[int, torch.Tensor] = {}
    with preserved_state(model):
        model.eval()  # dropout off, so attn_drop passes the weights through unchanged
        handles = []
        try:
            for i in blocks:
                mods[i].fused_attn = False

                def grab(_m: nn.Module, _inp: Any, out: torch.Tensor, i: int = i) -> None:
                    found[i] = out.detach()

                handles.append(mods[i].attn_drop.register_forward_hook(grab))
            with torch.no_grad():
                fwd = getattr(model, "forward_features", None)
                fwd(x) if callable(fwd) else model(x)
        finally:
            for h in handles:
                h.remove()
    missing = [i for i in blocks if i not in found]
    if missing:
        raise RuntimeError(f"model: attention of blocks {missing} was not observed; "
                           f"{type(mods[missing[0]]).__name__} does not pass its weights through attn_drop")
    return found


def attention_map(
    model: nn.Module,
    image: Any,
    block: int = -1,
    head: Head = "mean",
    rollout: bool = False,
    *,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Where a ViT looks: float32 (H, W) in [0, 1] at the input image's size.

    Args:
        model: a timm vision transformer, or an ``oml_viz.models`` extractor holding one.
        image: RGB uint8 array, PIL image or path, any size and aspect.
        block: which block's attention (negative counts from the end). With ``rollout``, the
            last block included in the rollout.
        head: ``"mean"`` over heads, ``"max"`` over heads, or one head's index.
        rollout: attention rollout (Abnar & Zuidema 2020): each block's head-reduced attention
            plus the identity (the residual path), rows renormalised, multiplied from the first
            block up to ``block``.
        input_size: (H, W) to feed the model instead of the automatic choice.

    A constant map (e.g. perfectly uniform attention) comes back as all zeros.
    """
    return _attention_map(model, image, block, head, rollout, input_size)[0]


def _attention_map(model: nn.Module, image: Any, block: int, head: Head, rollout: bool,
                   input_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    from oml_viz.run_args import check_input_size

    net = unwrap_model(model)
    if not is_vit(net):
        raise ValueError(f"model: {type(net).__name__} is not a timm vision transformer "
                         "(no patch_embed / blocks); use gradcam_map for CNNs")
    n_blocks = len(attention_modules(net))
    block = check_int("block", block, low=-n_blocks, high=n_blocks - 1,
                      hint=f" (the model has {n_blocks} attention blocks; negative counts from the last)")
    last = block % n_blocks
    n_heads = getattr(attention_modules(net)[last], "num_heads", None)
    if n_heads is not None:  # fail before the forward pass, naming the argument
        _reduce_heads(torch.zeros(1, n_heads, 1, 1), head)

    x, rgb = prepare_image(net, image, None if input_size is None else check_input_size(input_size))
    wanted = list(range(last + 1)) if rollout else [last]
    attn = collect_attention(net, x, wanted)

    a = _reduce_heads(attn[last].float(), head)[0]  # (N, N)
    if rollout:
        n = a.shape[-1]
        eye = torch.eye(n, dtype=a.dtype, device=a.device)
        joint = eye
        for i in wanted:
            layer = _reduce_heads(attn[i].float(), head)[0] + eye
            joint = (layer / layer.sum(dim=-1, keepdim=True)) @ joint
        a = joint

    p = int(getattr(net, "num_prefix_tokens", 1))
    gh, gw = token_grid(net, x.shape[-2], x.shape[-1])
    if a.shape[-1] != p + gh * gw:
        raise ValueError(f"model: {a.shape[-1]} tokens do not match {p} prefix tokens + a {gh}x{gw} patch grid "
                         f"for a {x.shape[-2]}x{x.shape[-1]} input")
    if _uses_cls_row(net):
        row = a[0, p:]
    else:
        row = a[p:, p:].mean(dim=0)  # documented fallback: attention received from the patches
    return resize_map(row.reshape(gh, gw), *rgb.shape[:2]), rgb


def draw_attention(
    model: nn.Module,
    image: Any,
    block: int = -1,
    head: Head = "mean",
    rollout: bool = False,
    *,
    cmap: Any = "jet",
    alpha: float = 0.5,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The attention map over the image: uint8 (H, W, 3) RGB, hot = red with ``"jet"``."""
    heat, rgb = _attention_map(model, image, block, head, rollout, input_size)
    return overlay_heatmap(rgb, heat, cmap=cmap, alpha=alpha)
