"""Grad-CAM for embedding models: which pixels make the embedding point where it points.

A classifier's Grad-CAM explains one logit; an embedding model has none. The target here is
the dot product of the embedding with a *reference* embedding: the image's own (detached)
embedding by default, which explains the embedding as a whole, or another image's, which
explains what the two share (see :func:`oml_viz.explain.explain_pair`). Methods come from
pytorch-grad-cam (>= 1.5) by name.

The model is left as it was: grad-cam's ``model.eval()`` and ``zero_grad()`` are undone and
its hooks are released even when it raises. The graph starts at the target layer (parameters
are frozen for the call and their ``requires_grad`` / ``.grad`` restored), so frozen models
work and the backward pass costs only what lies after the target layer.

Example:
    >>> import numpy as np, timm
    >>> resnet = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    >>> heat = gradcam_map(resnet, img, input_size=(64, 96))     # (H, W) float32 in [0, 1]
    >>> heat.shape, heat.dtype, bool(0 <= heat.min() <= heat.max() <= 1)
    ((30, 40), dtype('float32'), True)
    >>> other_emb = np.ones(512, np.float32)
    >>> gradcam_map(resnet, img, reference=other_emb, method="gradcam++", input_size=(64, 96)).shape
    (30, 40)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from oml_viz.compat.gradcam import release_hooks, uses_gradients
from oml_viz.explain.inputs import (
    fit_input_size,
    images_to_tensor,
    is_vit,
    resize_map,
    to_model,
    to_rgb,
    unwrap_model,
)
from oml_viz.explain.overlay import overlay_heatmap
from oml_viz.run_args import check_input_size
from oml_viz.explain.state import preserved_state


def _methods() -> dict[str, type]:
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM,
        "hirescam": pgc.HiResCAM,
        "gradcamelementwise": pgc.GradCAMElementWise,
        "eigencam": pgc.EigenCAM,
        "eigengradcam": pgc.EigenGradCAM,
        "scorecam": pgc.ScoreCAM,
        "kpcacam": pgc.KPCA_CAM,
        "shapleycam": pgc.ShapleyCAM,
    }


CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "gradcamelementwise",
                                "eigencam", "eigengradcam", "scorecam", "kpcacam", "shapleycam")


class EmbeddingTarget:
    """Grad-CAM target: ``<embedding, reference>``, the similarity the map explains.
    ``reference=None`` means the embedding itself, detached (no second forward pass).

    >>> EmbeddingTarget(torch.tensor([1.0, 0.0]))(torch.tensor([3.0, 4.0]))
    tensor(3.)
    """

    def __init__(self, reference: torch.Tensor | None = None):
        self.reference = None if reference is None else reference.detach()

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        ref = embedding.detach() if self.reference is None else self.reference
        if ref.numel() != embedding.numel():
            raise ValueError(f"reference has {ref.numel()} values but the model's embedding has "
                             f"{embedding.numel()}: pass an embedding made by this same model")
        ref = ref.to(device=embedding.device, dtype=embedding.dtype)
        return (embedding.reshape(-1) * ref.reshape(-1)).sum()


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage: ``layer4[-1]`` for ResNets, else timm's last feature stage
    (``stages[-1]`` for ConvNeXt, ``blocks[-1]`` for EfficientNet, ...); ``blocks[-1].norm1``
    for vision transformers. An ``oml_viz.models`` extractor is looked into: for
    ``ResnetExtractor(...)`` it is ``extractor.model.layer4[-1]``.

    >>> import timm
    >>> net = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> default_target_layer(net) is net.layer4[-1]
    True
    """
    outer, model = model, unwrap_model(model)
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4):
        return layer4[-1]
    if isinstance(layer4, nn.Module):
        return layer4
    if is_vit(model):
        last = model.blocks[-1]
        return getattr(last, "norm1", last)
    info = getattr(model, "feature_info", None)
    try:
        name = info[-1]["module"]
        return model.get_submodule(name)
    except (TypeError, KeyError, IndexError, AttributeError):
        pass
    raise ValueError(f"target_layer: cannot find the last convolutional stage of {type(outer).__name__}; "
                     f"pass target_layer=<module>, e.g. {_suggest_layer(outer)}")


def _suggest_layer(model: nn.Module) -> str:
    """A ``target_layer`` expression that works on ``model``: the module holding its last convolution."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs or "." not in convs[-1]:
        return "model.get_submodule('<name>') with a name from model.named_modules()"
    return f"model.get_submodule({convs[-1].rsplit('.', 1)[0]!r})"


def _vit_reshape(model: nn.Module, height: int, width: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from oml_viz.explain.attention import token_grid

    p = int(model.num_prefix_tokens)
    gh, gw = token_grid(model, height, width)

    def reshape(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4:  # NHWC tokens from some timm models
            return t.permute(0, 3, 1, 2)
        return t[:, p:, :].reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def _as_reference_list(reference: Any, n: int) -> list[torch.Tensor | None]:
    if reference is None:
        return [None] * n
    if isinstance(reference, (list, tuple)):
        if len(reference) != n:
            raise ValueError(f"reference: {len(reference)} references for {n} images")
        refs = [None if r is None else _reference_tensor(r, f"reference[{i}]") for i, r in enumerate(reference)]
        for i, r in enumerate(refs):
            if r is not None and r.ndim != 1:
                raise ValueError(f"reference[{i}] must be one (D,) embedding, got shape {tuple(r.shape)}")
        return refs
    ref = _reference_tensor(reference, "reference")
    if ref.ndim == 1:
        return [ref] * n
    if ref.ndim == 2 and ref.shape[0] == n:
        return list(ref)
    raise ValueError(f"reference must be one (D,) embedding or ({n}, D), got shape {tuple(ref.shape)}")


def _reference_tensor(value: Any, name: str) -> torch.Tensor:
    """A float32 tensor of a reference embedding; TypeError / ValueError for what cannot be one."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"{name} must be an embedding (array or tensor), got {type(value).__name__}")
    try:
        ref = value.detach().float().cpu() if isinstance(value, torch.Tensor) else \
            torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be numbers: {e}") from None
    if ref.numel() == 0:
        raise ValueError(f"{name} is empty")
    bad = ~torch.isfinite(ref)
    if bad.any():
        where = torch.nonzero(bad.reshape(-1))[:5].reshape(-1).tolist()
        raise ValueError(f"{name} holds NaN or inf (at flat positions {where}): the map would be NaN")
    return ref


def _resolve_method(method: Any) -> type:
    if isinstance(method, type):
        return method
    methods = _methods()
    cls = methods.get(str(method).lower().replace("_", "").replace("-", ""))
    if cls is None:
        raise ValueError(f"method: unknown or unsupported Grad-CAM method {method!r}; choose from {CAM_METHODS}")
    return cls


def gradcam_maps(
    model: nn.Module,
    images: Sequence[Any],
    reference: Any = None,
    method: Any = "gradcam",
    target_layer: nn.Module | None = None,
    *,
    input_size: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """:func:`gradcam_map` for several images: one embedding target per image, images of one
    input size run as one batch. ``reference``: None, one (D,) embedding for all, (B, D) or a
    list (items may be None = the image's own)."""
    net = unwrap_model(model)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("gradcam_map needs gradients: call it outside torch.inference_mode()")
    cam_cls = _resolve_method(method)
    if target_layer is not None and not isinstance(target_layer, nn.Module):
        raise TypeError(f"target_layer must be a module of the model (e.g. model.get_submodule('layer4')), "
                        f"got {type(target_layer).__name__} {target_layer!r}")
    if input_size is not None:
        input_size = check_input_size(input_size)
    layer = target_layer if target_layer is not None else default_target_layer(net)
    if not any(m is layer for m in net.modules()):
        raise ValueError("target_layer: the module is not part of the model")
    rgbs = [to_rgb(im, f"images[{i}]") for i, im in enumerate(images)]
    refs = _as_reference_list(reference, len(rgbs))
    sizes = [tuple(input_size) if input_size is not None else fit_input_size(net, *r.shape[:2]) for r in rgbs]
    out: list[np.ndarray | None] = [None] * len(rgbs)
    for size in dict.fromkeys(sizes):  # groups of equal input size, first-seen order
        idx = [i for i, s in enumerate(sizes) if s == size]
        x = to_model(images_to_tensor(net, [rgbs[i] for i in idx], size), net)  # type: ignore[arg-type]
        cams = _run_cam(net, x, [refs[i] for i in idx], cam_cls, layer)
        for j, i in enumerate(idx):
            out[i] = resize_map(cams[j], *rgbs[i].shape[:2])
    return out  # type: ignore[return-value]


def _run_cam(net: nn.Module, x: torch.Tensor, refs: list[torch.Tensor | None], cam_cls: type,
             layer: nn.Module) -> np.ndarray:
    reshape = _vit_reshape(net, x.shape[-2], x.shape[-1]) if is_vit(net) else None
    with preserved_state(net):  # restores requires_grad, .grad, modes and hooks
        net.eval()
        # The maps need gradients at the target layer only: freeze every parameter and start
        # the graph at the layer's output. Nothing before it is recorded or back-propagated,
        # and the gradient there is the same as the full graph's. Frozen models work alike.
        for p in net.parameters():
            p.requires_grad_(False)

        def graph_starts_here(_m: nn.Module, _inp: Any, out: Any) -> Any:
            return out.detach().requires_grad_(True) if isinstance(out, torch.Tensor) else None

        handle = layer.register_forward_hook(graph_starts_here, prepend=True)  # before grad-cam's hooks
        cam = None
        try:
            cam = cam_cls(model=net, target_layers=[layer], reshape_transform=reshape)
            if any(r is None for r in refs) and not uses_gradients(cam):
                # Perturbation methods (Score-CAM) score masked inputs: they need the
                # original image's embedding, computed once here.
                with torch.no_grad():
                    own = net(x).detach()
                refs = [own[i] if r is None else r for i, r in enumerate(refs)]
            targets = [EmbeddingTarget(r) for r in refs]
            with torch.enable_grad():
                maps = cam(input_tensor=x, targets=targets)
        finally:
            handle.remove()
            if cam is not None:
                release_hooks(cam)  # grad-cam's __exit__ would swallow IndexError
    return np.asarray(maps, dtype=np.float32)


def gradcam_map(
    model: nn.Module,
    image: Any,
    reference: Any = None,
    method: Any = "gradcam",
    target_layer: nn.Module | None = None,
    *,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Grad-CAM of the embedding: float32 (H, W) in [0, 1] at the input image's size.

    Args:
        model: a timm model (CNN or ViT) or an ``oml_viz.models`` extractor; its output is the
            embedding (extractors: before ``normalise_features``, whose gradient vanishes
            along the image's own embedding).
        image: RGB uint8 array, PIL image or path, any size.
        reference: the embedding to compare with, (D,); None = the image's own, detached.
        method: a name from :data:`CAM_METHODS` or a pytorch-grad-cam class.
        target_layer: the module whose activations are weighted; default
            :func:`default_target_layer`.
        input_size: (H, W) to feed the model instead of the automatic choice.
    """
    if reference is not None and not isinstance(reference, (list, tuple)):
        reference = _reference_tensor(reference, "reference")  # errors name ``reference`` itself
        if reference.ndim != 1:
            raise ValueError(f"reference must be one (D,) embedding, got shape {tuple(reference.shape)}")
    return gradcam_maps(model, [image], None if reference is None else [reference], method, target_layer,
                        input_size=input_size)[0]


def draw_gradcam(
    model: nn.Module,
    image: Any,
    reference: Any = None,
    method: Any = "gradcam",
    target_layer: nn.Module | None = None,
    *,
    cmap: Any = "jet",
    alpha: float = 0.5,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The Grad-CAM map over the image: uint8 (H, W, 3) RGB, hot = red with ``"jet"``."""
    rgb = to_rgb(image)
    heat = gradcam_map(model, rgb, reference, method, target_layer, input_size=input_size)
    return overlay_heatmap(rgb, heat, cmap=cmap, alpha=alpha)
