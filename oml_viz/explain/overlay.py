"""Heat map over an image: RGB uint8, hot = red (with ``"jet"``), any matplotlib colormap.

OpenCV's colormaps return BGR, which is how OML's overlays came to show hot regions in blue;
matplotlib's return RGBA, so the colours here are what the colormap's name promises.

Example:
    >>> img = np.zeros((4, 6, 3), np.uint8)
    >>> heat = np.array([[0.0, 1.0]], np.float32)              # any size: resized to the image
    >>> rgb = overlay_heatmap(img, heat, cmap="jet", alpha=0.5)
    >>> rgb.dtype, rgb.shape == img.shape
    (dtype('uint8'), True)
    >>> rgb[0, -1].tolist(), colorize(np.array([[1.0]]))[0, 0].tolist()   # hot = red
    ([64, 0, 0], [127, 0, 0])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from oml_viz.explain.inputs import resize_map, to_rgb


def colorize(heat: np.ndarray, cmap: Any = "jet") -> np.ndarray:
    """A [0, 1] map -> RGB uint8 (H, W, 3) through a matplotlib colormap (name or object)."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError:
        raise ValueError(f"cmap: unknown matplotlib colormap {cmap!r}") from None
    if not callable(cm):
        raise TypeError(f"cmap must be a colormap name or a matplotlib Colormap, got {type(cmap).__name__}")
    rgba = cm(np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def overlay_heatmap(image: Any, heat: np.ndarray, cmap: Any = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend ``heat`` (any 2-D size, values in [0, 1]) over ``image``.

    Args:
        image: RGB uint8 array, PIL image or path; the result has its H x W.
        heat: 2-D map; resized (bilinear) to the image when its size differs.
        cmap: matplotlib colormap name or object.
        alpha: weight of the colour, 0 (image only) to 1 (colour only).

    Returns:
        uint8 (H, W, 3) RGB.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_rgb(image)
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"heat must be a 2-D map, got shape {h.shape}")
    if h.shape != rgb.shape[:2]:
        h = resize_map(h, *rgb.shape[:2])
    colour = colorize(h, cmap).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
