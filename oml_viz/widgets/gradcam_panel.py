"""``GradCAMPanel``: Grad-CAM of an embedding, per method and layer, against a chosen target.

The target is the item's own embedding (what the embedding as a whole draws on) or a gallery
item's (what the two share: :func:`oml_viz.explain.explain_pair`, maps on both images).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                   # 4 labels x 3 items
    >>> images = [np.full((32, 32, 3), 40 * (i % 6), np.uint8) for i in range(12)]
    >>> res = ov.retrieve(rng.normal(size=(12, 8)).astype(np.float32) + labels[:, None], labels, top_n=5)
    >>> cnn = ov.models.ResnetExtractor("resnet18")
    >>> panel = GradCAMPanel(cnn, images, res=res, methods=("gradcam", "layercam"), side=64,
    ...                      input_size=(64, 64), background=False)
    >>> panel.wait().view_png()[:4]
    b'\x89PNG'
    >>> panel.close()
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import ipywidgets as w
import numpy as np
from torch import nn

from oml_viz.explain import CAM_METHODS, default_target_layer, explain_pair, gradcam_map, overlay_heatmap
from oml_viz.explain.inputs import is_vit, unwrap_model

from .base import Panel
from .items import Items, check_item_ids, offer
from .png import captioned_strip, rgb_to_png

DEFAULT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam")
OWN, GALLERY = "own", "gallery"


def target_layer_names(model: nn.Module, limit: int = 8) -> list[str]:
    """Names of layers worth explaining, the default target layer first, deepest first:
    ``blocks.i.norm1`` for ViTs, timm's feature stages (``layer4`` ...) for CNNs."""
    net = unwrap_model(model)
    names: list[str] = []
    default = default_target_layer(net)
    names += [n for n, m in net.named_modules() if m is default][:1]
    if is_vit(net):
        names += [f"blocks.{i}.norm1" for i in reversed(range(len(net.blocks)))]
    else:
        info = getattr(net, "feature_info", None)
        try:
            names += [str(f["module"]) for f in reversed(list(info))]
        except (TypeError, KeyError):
            pass
    known = dict(net.named_modules())
    return [n for n in dict.fromkeys(names) if n in known][:limit]


def button_width(labels: Sequence[str], font_px: int = 13, padding: int = 32) -> str:
    """A CSS width that shows the longest of ``labels`` whole on a button (JupyterLab's 13 px UI
    font, measured with DejaVu Sans, which is wider than most UI fonts, plus the button padding)."""
    from oml_viz.render.text import get_font

    font = get_font(font_px)
    return f"{int(np.ceil(max(font.getlength(str(t)) for t in labels))) + padding}px"


class GradCAMPanel(Panel):
    """Grad-CAM maps of a timm model (CNN or ViT) or an ``oml_viz.models`` extractor.

    Args:
        model: the model whose embedding is explained.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        res: optional :class:`oml_viz.RetrievalResult`: labels, the default items (its worst
            queries by ``metric``) and, for a query, its retrieved items as gallery targets.
        item_ids: the items the picker offers.
        methods: Grad-CAM method names (see :data:`oml_viz.explain.CAM_METHODS`).
        layers: target layer names (default :func:`target_layer_names`).
        side: shown image side in pixels.
        input_size: (H, W) fed to the model (default: the explainers' automatic choice).
        background: False makes every render finish before a call returns.
    """

    css_class = "ov-gradcam"

    def __init__(self, model: Any, images: Any, *, res: Any = None, item_ids: Sequence[int] | None = None,
                 dataset_root: str | os.PathLike | None = None, methods: Sequence[str] = DEFAULT_METHODS,
                 layers: Sequence[str] | None = None, metric: str | None = None, side: int = 224,
                 input_size: tuple[int, int] | None = None, background: bool = True):
        net = unwrap_model(model)
        bad = [m for m in methods if str(m).lower() not in CAM_METHODS]
        if not methods or bad:
            raise ValueError(f"methods: unknown Grad-CAM methods {bad or list(methods)}; choose from {CAM_METHODS}")
        layer_names = list(layers) if layers is not None else target_layer_names(net)
        known = dict(net.named_modules())
        missing = [n for n in layer_names if n not in known]
        if not layer_names or missing:
            raise ValueError(f"layers: {missing or 'none given'} are not modules of {type(net).__name__}")
        super().__init__(background=background)
        self.model, self.res, self.side = model, res, int(side)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self._modules = {n: known[n] for n in layer_names}
        self.items = Items(images, dataset_root, labels=None if res is None else res.labels)
        ids = check_item_ids(item_ids, self.items, res, metric)
        self.item_ids = ids

        self.item = w.Dropdown(options=[(self.items.describe(i), i) for i in ids], value=ids[0], description="item",
                               layout=w.Layout(width="260px"))
        self.item.add_class("ov-cam-item")
        self.method = w.Dropdown(options=[str(m).lower() for m in methods], description="method",
                                 layout=w.Layout(width="220px"))
        self.method.add_class("ov-cam-method")
        self.layer = w.Dropdown(options=layer_names, description="layer", layout=w.Layout(width="260px"))
        self.layer.add_class("ov-cam-layer")
        targets = [("own embedding", OWN), ("gallery item", GALLERY)]
        self.target = w.ToggleButtons(options=targets, value=OWN, description="target",
                                      style={"button_width": button_width([t for t, _ in targets])})
        self.target.add_class("ov-cam-target")
        self.gallery = w.Dropdown(options=self._gallery_options(ids[0]), description="gallery", disabled=True,
                                  layout=w.Layout(width="300px"))
        self.gallery.add_class("ov-cam-gallery")
        self.view = self._slot("ov-cam-image")
        self._quiet = False
        self.item.observe(self._on_item, names="value")
        for control in (self.method, self.layer, self.target, self.gallery):
            control.observe(self._on_control, names="value")
        self.children = [w.HBox([self.item, self.method, self.layer]), w.HBox([self.target, self.gallery]),
                         self.view.progress, self.view.image, self.view.status]
        self._start()

    def _gallery_options(self, item: int) -> list[tuple[str, int]]:
        """The item's retrieved results when it is a query of ``res``, else the other offered items."""
        res = self.res
        if res is not None:
            row = int(np.searchsorted(res.query_ids, item))
            if row < len(res.query_ids) and res.query_ids[row] == item:
                out = []
                for rank, (gid, rel) in enumerate(zip(res.retrieved_ids[row], res.is_relevant[row]), start=1):
                    if gid >= 0:
                        out.append((f"#{rank} item {int(gid)} ({'relevant' if rel else 'not relevant'})", int(gid)))
                if out:
                    return out
        return [(self.items.describe(i), i) for i in self.item_ids if i != item] or [(self.items.describe(item), item)]

    def _on_item(self, change: dict) -> None:
        quiet, self._quiet = self._quiet, True  # new options change the gallery value: one refresh, not two
        try:
            self.gallery.options = self._gallery_options(change["new"])
        finally:
            self._quiet = quiet
        if not quiet:
            self._refresh()

    def _on_control(self, change: dict) -> None:
        self.gallery.disabled = self.target.value != GALLERY
        if not self._quiet:
            self._refresh()

    def show_item(self, item: int, gallery: int | None = None) -> None:
        """Show ``item``; with ``gallery``, toward that gallery item's embedding. One render."""
        item = self.items.check_id(item)
        if gallery is not None:
            gallery = self.items.check_id(gallery, "gallery")
        self._quiet = True
        try:
            offer(self.item, self.items, item)
            self.item.value = item
            if gallery is not None:
                offer(self.gallery, self.items, gallery)
                self.gallery.value = gallery
                self.target.value = GALLERY
        finally:
            self._quiet = False
        self.gallery.disabled = self.target.value != GALLERY
        self._refresh()

    @property
    def state(self) -> dict:
        return {"item": self.item.value, "method": self.method.value, "layer": self.layer.value,
                "target": self.target.value, "gallery": self.gallery.value}

    def describe(self) -> str:
        """The current view in words, as its image shows it (the report's caption)."""
        s = self.state
        where = f"{s['method']} at layer {s['layer']}"
        if s["target"] == GALLERY:
            return (f"{where}: item {s['item']} toward the embedding of item {s['gallery']}, "
                    f"and item {s['gallery']} toward that of item {s['item']}")
        return f"{where}: item {s['item']} toward its own embedding"

    def _views(self) -> list:
        item, method, layer, target = self.item.value, self.method.value, self.layer.value, self.target.value
        gid = self.gallery.value if target == GALLERY else None
        items, model, module, side, size = self.items, self.model, self._modules[layer], self.side, self.input_size
        where = f"{method} · {layer}"

        def make() -> bytes:
            img = items.image(item)
            if gid is None:
                over = overlay_heatmap(img, gradcam_map(model, img, None, method, target_layer=module,
                                                        input_size=size))
                return rgb_to_png(captioned_strip([img, over], [items.describe(item), f"own embedding\n{where}"], side))
            g_img = items.image(gid)
            pair = explain_pair(model, img, g_img, method=method, target_layer=module, input_size=size)
            q_over, g_over = pair.overlays()
            return rgb_to_png(captioned_strip(
                [img, q_over, g_over, g_img],
                [items.describe(item), f"toward item {gid}\n{where}", f"toward item {item}\n{where}",
                 items.describe(gid)], side))

        return [(self.view, ("gradcam", item, method, layer, target, gid), make)]
