"""A model described by what it is: its timm architecture, the arguments that changed it from that
architecture's defaults, and its parameter count (a name like ``vit_tiny_patch16_224`` alone
hides a model built with ``patch_size=8, embed_dim=128, depth=3``).

Example:
    >>> import timm
    >>> net = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=0)
    >>> describe_model(net)
    'vit_tiny_patch16_224(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3), 931 k parameters'
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["describe_model", "parameter_count"]


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def _count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.3g} M parameters"
    if n >= 1e3:
        return f"{n / 1e3:.3g} k parameters"
    return f"{n} parameters"


def _vit_facts(net: nn.Module) -> dict[str, Any]:
    """The arguments that shape a timm ViT, read from the built model."""
    pe = net.patch_embed
    facts: dict[str, Any] = {}
    if getattr(pe, "img_size", None) is not None:
        h, w = (int(v) for v in pe.img_size)
        facts["img_size"] = h if h == w else (h, w)
    if getattr(pe, "patch_size", None) is not None:
        ph, pw = (int(v) for v in pe.patch_size)
        facts["patch_size"] = ph if ph == pw else (ph, pw)
    facts["embed_dim"] = int(getattr(net, "embed_dim", getattr(net, "num_features", 0)))
    facts["depth"] = len(net.blocks)
    heads = getattr(getattr(net.blocks[0], "attn", None), "num_heads", None) if len(net.blocks) else None
    if heads is not None:
        facts["num_heads"] = int(heads)
    return facts


def describe_model(model: Any) -> str:
    """``arch(kwargs), N parameters`` for an ``oml_viz.models`` extractor or a timm model; the
    class name and parameter count for any other module.

    Extractors list the ``timm.create_model`` arguments they were built with; timm ViTs list
    ``img_size``, ``patch_size``, ``embed_dim``, ``depth`` and ``num_heads`` as built.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inner = getattr(model, "model", None)
    arch = getattr(model, "arch", None)
    kwargs: dict[str, Any] = dict(getattr(model, "model_kwargs", None) or {})
    net = inner if isinstance(inner, nn.Module) and arch is not None else model
    if arch is None:
        cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
        arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    if hasattr(net, "patch_embed") and hasattr(net, "blocks"):
        kwargs = {**_vit_facts(net), **{k: v for k, v in kwargs.items() if k not in _vit_facts(net)}}
    name = arch or type(model).__name__
    args = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in kwargs.items())
    text = f"{name}({args})" if args else name
    if getattr(model, "normalise_features", False):
        text += ", L2-normalised features"
    return f"{text}, {_count(parameter_count(model))}"
