"""oml_viz.explain: attention maps, Grad-CAM with embedding targets, pairwise maps, overlays.

Every function takes a timm model (or an ``oml_viz.models`` extractor) and an RGB image of any
size, normalises it with the model's own timm data config, and returns maps at the image's
size. None of them changes the model (mode, ``fused_attn`` flags, hooks, gradients, device).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> vit = ov.models.ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
    ...                              depth=1, num_heads=2)
    >>> resnet = ov.models.ResnetExtractor("resnet18")
    >>> img = np.random.default_rng(0).integers(0, 256, (24, 36, 3), dtype=np.uint8)
    >>> heat = ov.attention_map(vit, img)                       # float32 (H, W) in [0, 1]
    >>> heat.shape, heat.dtype, bool(0 <= heat.min() <= heat.max() <= 1)
    ((24, 36), dtype('float32'), True)
    >>> ov.draw_gradcam(resnet, img, input_size=(64, 96)).shape  # uint8 (H, W, 3)
    (24, 36, 3)
    >>> q_rgb, g_rgb = ov.explain_pair(vit, img, img[:, ::-1]).overlays()
    >>> q_rgb.shape, g_rgb.dtype
    ((24, 36, 3), dtype('uint8'))
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
