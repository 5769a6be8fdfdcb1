"""Weights on disk: read a state dict from any common checkpoint, save and reload extractors.

Reading accepts a plain ``state_dict`` (``.pt``/``.pth``/``.ckpt``, loaded with
``torch.load(weights_only=True)``, so no pickled code runs), ``.safetensors``, a dict holding
``"state_dict"`` / ``"model"`` (Lightning, OML), and keys prefixed ``module.`` / ``model.``.

An extractor checkpoint (written by :func:`save_extractor`) also records the architecture and
its keyword arguments, so :func:`load_extractor` rebuilds the model without being told.

Example:
    >>> import tempfile, torch
    >>> from oml_viz.models import ResnetExtractor
    >>> net = ResnetExtractor("resnet18", normalise_features=True)
    >>> path = save_extractor(net, Path(tempfile.mkdtemp()) / "net.pt")
    >>> same = load_extractor(path)
    >>> type(same).__name__, same.normalise_features
    ('ResnetExtractor', True)
    >>> all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), same.state_dict().values()))
    True
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from oml_viz.data.atomic import atomic_path
from oml_viz.errors import InputFileNotFoundError, InputValueError
from oml_viz.models.registry import extractor_class

FORMAT = "oml_viz.extractor"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.", "extractor.")
_PRIMITIVES = (bool, int, float, str, type(None))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw object stored at ``path`` (safetensors or a torch file, read safely)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileNotFoundError(f"weights: no checkpoint file at {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-tensor payloads
        raise InputValueError(f"weights: cannot read {p} as a torch checkpoint with weights_only=True ({e})") from e
    if not isinstance(obj, dict):
        raise InputValueError(f"weights: {p} holds a {type(obj).__name__}, expected a state dict")  # noqa: TRY004 (file content)
    return obj


def state_dict_of(obj: dict[str, Any], path: str | os.PathLike = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor mapping inside a loaded checkpoint (unwrapping ``state_dict`` / ``model``)."""
    for key in ("state_dict", "model", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputValueError(f"weights: {path} has no tensors (keys: {sorted(obj)[:8]})")
    return tensors


def _strip_prefixes(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``model.``...) while that makes more keys match."""
    best = sd
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if best and all(k.startswith(pre) for k in best):
                cand = {k[len(pre):]: v for k, v in best.items()}
                if len(expected & set(cand)) >= len(expected & set(best)):
                    best, changed = cand, True
    return best


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (in place) and return it.

    Head weights (``head.*``, ``fc.*``, ``classifier.*``) that the model, built with
    ``num_classes=0``, does not have are ignored. Anything else that does not match raises a
    ValueError naming the keys (unless ``strict=False``).
    """
    sd = state_dict_of(read_checkpoint(path), path)
    expected = set(model.state_dict())
    sd = _strip_prefixes(sd, expected)
    heads = ("head.", "fc.", "classifier.", "head_dist.")
    sd = {k: v for k, v in sd.items() if k in expected or not k.startswith(heads)}
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    shape_bad = sorted(k for k in expected & set(sd) if tuple(sd[k].shape) != tuple(model.state_dict()[k].shape))
    if strict and (missing or unexpected or shape_bad):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shape_bad:
            k = shape_bad[0]
            parts.append(f"{len(shape_bad)} with another shape (e.g. {k}: file {tuple(sd[k].shape)}, "
                         f"model {tuple(model.state_dict()[k].shape)})")
        raise InputValueError(f"weights: {path} does not fit {type(model).__name__}: " + "; ".join(parts)
                         + " (is arch / its keyword arguments the ones it was trained with?)")
    if shape_bad:
        sd = {k: v for k, v in sd.items() if k not in shape_bad}
    model.load_state_dict(sd, strict=False)
    return model


def check_config_value(key: str, value: Any) -> Any:
    """Model kwargs must survive ``torch.load(weights_only=True)``: primitives, tuples, lists, dicts."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(check_config_value(key, v) for v in value)
    if isinstance(value, dict):
        return {str(k): check_config_value(f"{key}.{k}", v) for k, v in value.items()}
    raise InputValueError(f"model_kwargs[{key!r}]: {type(value).__name__} cannot be stored in a checkpoint "
                     "(use plain numbers, strings, bools, tuples)")


def save_extractor(extractor: Any, path: str | os.PathLike) -> Path:
    """Write ``extractor``'s architecture, kwargs and weights to ``path`` (``.safetensors``
    writes weights only). The file is written to a temporary name and moved in place, so an
    interrupted save never leaves half a checkpoint."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in extractor.model.state_dict().items()}
    with atomic_path(p) as tmp:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp), metadata={"format": FORMAT, "arch": extractor.arch})
        else:
            torch.save({
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "kind": extractor.kind,
                "arch": extractor.arch,
                "model_kwargs": {k: check_config_value(k, v) for k, v in extractor.model_kwargs.items()},
                "normalise_features": bool(extractor.normalise_features),
                "state_dict": sd,
            }, tmp)
    return p


def load_extractor(path: str | os.PathLike, **overrides: Any) -> Any:
    """Rebuild the extractor saved by :func:`save_extractor` (a ``ViTExtractor`` or
    ``ResnetExtractor``, as saved). ``overrides`` replace saved settings, e.g.
    ``normalise_features=True``."""
    obj = read_checkpoint(path)
    if obj.get("format") != FORMAT:
        raise InputValueError(f"path: {path} is not an oml_viz extractor checkpoint (no architecture recorded); "
                         "build the extractor with its arch and pass weights=path instead")
    cls = extractor_class(obj.get("kind"))
    kwargs = dict(obj.get("model_kwargs") or {})
    normalise = overrides.pop("normalise_features", obj.get("normalise_features", False))
    arch = overrides.pop("arch", obj["arch"])
    kwargs.update(overrides)
    ext = cls(arch=arch, weights=None, normalise_features=normalise, **kwargs)
    load_weights(ext.model, path)
    return ext
