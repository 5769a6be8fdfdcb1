"""Tiles of the grid as numpy arrays: a thumbnail in a coloured frame, or a placeholder."""
from __future__ import annotations

import numpy as np

from .colors import BACKGROUND_COLOR, BBOX_COLOR, PLACEHOLDER_FILL, PLACEHOLDER_LINES


def draw_rect(img: np.ndarray, box: tuple[int, int, int, int], color, width: int) -> None:
    """Draw a rectangle outline inside ``box`` (x0, y0, x1, y1, exclusive) onto ``img`` in place."""
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    width = max(1, min(width, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2))
    c = np.asarray(color, dtype=np.uint8)
    img[y0:y0 + width, x0:x1] = c
    img[y1 - width:y1, x0:x1] = c
    img[y0:y1, x0:x0 + width] = c
    img[y0:y1, x1 - width:x1] = c


def inner_side(tile: int, frame: int) -> int:
    """Side of the square a thumbnail must fit in: the tile less its frame and a 1 px margin."""
    return tile - 2 * (frame + 1)


def framed_tile(
    thumb: np.ndarray,
    tile: int,
    frame: int,
    color,
    bbox: tuple[int, int, int, int] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A (tile, tile, 3) uint8 square: ``thumb`` centred on white, framed in ``color``.

    ``bbox`` (thumbnail pixels) is drawn in :data:`BBOX_COLOR` when given. ``out``: a
    (tile, tile, 3) view to draw into (the grid itself), else a new array.
    """
    if out is None:
        out = np.empty((tile, tile, 3), dtype=np.uint8)
    out[:] = BACKGROUND_COLOR
    h, w = thumb.shape[:2]
    side = inner_side(tile, frame)
    if h > side or w > side:
        raise ValueError(f"thumbnail {w}x{h} does not fit a {side} px tile interior")
    y0 = (tile - h) // 2
    x0 = (tile - w) // 2
    region = out[y0:y0 + h, x0:x0 + w]
    region[:] = thumb
    if bbox is not None:
        draw_rect(region, bbox, BBOX_COLOR, max(1, tile // 64))
    draw_rect(out, (0, 0, tile, tile), color, frame)
    return out


def placeholder_tile(tile: int, frame: int, color) -> np.ndarray:
    """A grey tile with a cross, framed in ``color``: stands for an image that could not be read."""
    out = np.empty((tile, tile, 3), dtype=np.uint8)
    out[:] = PLACEHOLDER_FILL
    idx = np.arange(tile)
    for d in (-1, 0, 1):  # 3 px thick diagonals
        j = np.clip(idx + d, 0, tile - 1)
        out[idx, j] = PLACEHOLDER_LINES
        out[idx, tile - 1 - j] = PLACEHOLDER_LINES
    draw_rect(out, (0, 0, tile, tile), color, frame)
    return out
