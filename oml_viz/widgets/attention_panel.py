"""``AttentionPanel``: where a ViT looks, per item, block and head (mean / one / max / rollout).

Heat maps are cached apart from the overlays, so moving the alpha slider only re-blends.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                   # 4 labels x 3 items
    >>> images = [np.full((32, 32, 3), 40 * (i % 6), np.uint8) for i in range(12)]
    >>> res = ov.retrieve(rng.normal(size=(12, 8)).astype(np.float32) + labels[:, None], labels, top_n=5)
    >>> vit = ov.models.ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
    ...                              depth=1, num_heads=2)
    >>> panel = AttentionPanel(vit, images, res=res, side=64, background=False)
    >>> panel.wait().view_png()[:4]
    b'\x89PNG'
    >>> panel.close()
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import ipywidgets as w

from oml_viz.explain import attention_map, attention_modules, overlay_heatmap
from oml_viz.explain.inputs import is_vit, unwrap_model

from .base import Panel
from .items import Items, check_item_ids, offer
from .png import PngCache, captioned_strip, rgb_to_png


class AttentionPanel(Panel):
    """Attention maps of a timm vision transformer over chosen items.

    Args:
        model: a timm ViT or an ``oml_viz.models.ViTExtractor``.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        res: optional :class:`oml_viz.RetrievalResult` of these items: labels, and the default
            items to offer (its worst queries by ``metric``).
        item_ids: the items the picker offers (default: see ``res``; else the first 20).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        side: shown image side in pixels.
        background: False makes every render finish before a call returns.
    """

    css_class = "ov-attention"
    heats: PngCache | None = None

    def __init__(self, model: Any, images: Any, *, res: Any = None, item_ids: Sequence[int] | None = None,
                 dataset_root: str | os.PathLike | None = None, metric: str | None = None, side: int = 224,
                 background: bool = True):
        net = unwrap_model(model)
        if not is_vit(net):
            raise ValueError(f"model: {type(net).__name__} is not a timm vision transformer; "
                             "use GradCAMPanel for CNNs")
        super().__init__(background=background)
        mods = attention_modules(net)
        self.model, self.side = model, int(side)
        self.n_blocks, self.n_heads = len(mods), int(getattr(mods[-1], "num_heads", 1))
        self.items = Items(images, dataset_root, labels=None if res is None else res.labels)
        ids = check_item_ids(item_ids, self.items, res, metric)
        self.heats = PngCache(max_items=512, max_bytes=64 * 2**20)

        self.item = w.Dropdown(options=[(self.items.describe(i), i) for i in ids], value=ids[0], description="item",
                               layout=w.Layout(width="260px"))
        self.item.add_class("ov-attn-item")
        heads = [("mean", "mean"), ("max", "max")] + [(f"head {h}", h) for h in range(self.n_heads)]
        self.head = w.ToggleButtons(options=heads, value="mean", description="heads",
                                    style={"button_width": "76px"})
        self.head.add_class("ov-attn-head")
        self.block = w.IntSlider(value=self.n_blocks - 1, min=0, max=self.n_blocks - 1, description="block",
                                 continuous_update=False)
        self.block.add_class("ov-attn-block")
        self.rollout = w.Checkbox(value=False, description="rollout (blocks 0..block)", indent=False)
        self.rollout.add_class("ov-attn-rollout")
        self.alpha = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="alpha",
                                   continuous_update=False)
        self.alpha.add_class("ov-attn-alpha")
        self.view = self._slot("ov-attn-image")
        for control in (self.item, self.head, self.block, self.rollout, self.alpha):
            control.observe(lambda _: self._refresh(), names="value")
        self.children = [w.HBox([self.item, self.block, self.alpha]), w.HBox([self.head, self.rollout]),
                         self.view.progress, self.view.image, self.view.status]
        self._start()

    def show_item(self, item: int) -> None:
        """Show ``item`` (added to the picker when it is not offered yet)."""
        item = self.items.check_id(item)
        offer(self.item, self.items, item)
        self.item.value = item

    @property
    def state(self) -> dict:
        return {"item": self.item.value, "head": self.head.value, "block": self.block.value,
                "rollout": self.rollout.value, "alpha": self.alpha.value}

    def _views(self) -> list:
        item, head, block, rollout, alpha = (self.item.value, self.head.value, self.block.value,
                                             self.rollout.value, round(float(self.alpha.value), 3))
        items, model, heats, side = self.items, self.model, self.heats, self.side
        head_name = head if isinstance(head, str) else f"head {head}"
        caption = f"block {block} · {head_name}" + (" · rollout" if rollout else "")
        heat_key = (item, block, head, rollout)

        def make() -> bytes:
            img = items.image(item)
            heat = heats.get(heat_key)
            if heat is None:
                heat = attention_map(model, img, block=block, head=head, rollout=rollout)
                heats.put(heat_key, heat)
            over = overlay_heatmap(img, heat, alpha=alpha)
            return rgb_to_png(captioned_strip([img, over], [items.describe(item), caption], side))

        return [(self.view, ("attention", *heat_key, alpha), make)]

    def close(self) -> None:
        if self.heats is not None:
            self.heats.clear()
        super().close()
