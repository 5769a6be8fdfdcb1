"""oml_viz.explain: attention maps, Grad-CAM with embedding targets, pairwise maps, overlays.

Every function takes a timm model (or an ``oml_viz.models`` extractor) and an RGB image of any
size, normalises it with the model's own timm data config, and returns maps at the image's
size. None of them changes the model (mode, ``fused_attn`` flags, hooks, gradients, device).

Example:
    >>> import oml_viz as ov
    >>> heat = ov.attention_map(vit, img)          # float32 (H, W) in [0, 1]   # doctest: +SKIP
    >>> rgb = ov.draw_gradcam(resnet, img)         # uint8 (H, W, 3)            # doctest: +SKIP
    >>> pair = ov.explain_pair(vit, query, gallery); q_rgb, g_rgb = pair.overlays()  # doctest: +SKIP
"""
from oml_viz.explain.attention import attention_map, attention_modules, draw_attention
from oml_viz.explain.gradcam import (
    CAM_METHODS,
    EmbeddingTarget,
    default_target_layer,
    draw_gradcam,
    gradcam_map,
    gradcam_maps,
)
from oml_viz.explain.overlay import colorize, overlay_heatmap
from oml_viz.explain.pair import PairExplanation, explain_pair
from oml_viz.explain.state import ModelState, capture_state, preserved_state

__all__ = [
    "CAM_METHODS",
    "EmbeddingTarget",
    "ModelState",
    "PairExplanation",
    "attention_map",
    "attention_modules",
    "capture_state",
    "colorize",
    "default_target_layer",
    "draw_attention",
    "draw_gradcam",
    "explain_pair",
    "gradcam_map",
    "gradcam_maps",
    "overlay_heatmap",
    "preserved_state",
]
