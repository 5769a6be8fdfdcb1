"""Images for widgets: PNG bytes made without pyplot, labelled strips, and an LRU of PNGs.

Every panel shows PNG bytes in an ``ipywidgets.Image``. They are made from RGB arrays with PIL
or from a ``matplotlib.figure.Figure`` on an Agg canvas, so nothing touches pyplot's global
state (safe on a worker thread, no figure left open in the notebook).

Example:
    >>> import numpy as np
    >>> png = rgb_to_png(np.zeros((4, 4, 3), np.uint8))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""
from __future__ import annotations

import io
from functools import lru_cache
from typing import Sequence

import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from oml_viz.data.cache import LRUCache
from oml_viz.render.figure import figure_to_array

_CAPTION_PX = 12


@lru_cache(maxsize=4)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib), or PIL's own font when it cannot be read."""
    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size_px)
    except OSError:
        return ImageFont.load_default(size_px)


def _fit_text(text: str, font, max_width: float) -> str:
    """``text`` cut with an ellipsis at the end until it fits ``max_width`` pixels."""
    if font.getlength(text) <= max_width:
        return text
    while text and font.getlength(text + "…") > max_width:
        text = text[:-1]
    return text + "…"


def rgb_to_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """RGB uint8 (H, W, 3) -> PNG bytes (fast compression: these are shown, not archived)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), "RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def png_to_rgb(png: bytes) -> np.ndarray:
    """PNG bytes -> RGB uint8 (H, W, 3)."""
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def figure_to_png(fig: Figure, dpi: float | None = None) -> bytes:
    """A matplotlib figure -> PNG bytes through an Agg canvas (the figure's own canvas is kept)."""
    return rgb_to_png(figure_to_array(fig, dpi))


def upscale(rgb: np.ndarray, side: int) -> np.ndarray:
    """Fit ``rgb`` into a ``side`` square keeping its aspect; small images grow with sharp pixels."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return rgb
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, resample), dtype=np.uint8)


def captioned_strip(images: Sequence[np.ndarray], captions: Sequence[str], side: int = 224,
                    frames: Sequence[tuple[int, int, int] | None] | None = None) -> np.ndarray:
    """Images side by side, each fitted into a ``side`` square, with a caption line (or two,
    split on ``"\\n"``) above each, optionally framed in a colour. RGB uint8.

    Example:
        >>> strip = captioned_strip([np.zeros((8, 8, 3), np.uint8)] * 2, ["a", "b"], side=32)
        >>> strip.shape
        (80, 88, 3)
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    frames = list(frames) if frames is not None else [None] * len(images)
    pad, title_h = 8, 2 * (_CAPTION_PX + 4)
    width = pad + len(images) * (side + pad)
    out = np.full((title_h + side + 2 * pad, width, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        fitted = upscale(np.asarray(img, dtype=np.uint8), side)
        h, w = fitted.shape[:2]
        x0 = pad + i * (side + pad) + (side - w) // 2
        y0 = pad + title_h + (side - h) // 2
        out[y0:y0 + h, x0:x0 + w] = fitted
        if frames[i] is not None:
            c, t = np.asarray(frames[i], np.uint8), 3
            out[y0 - t:y0, x0 - t:x0 + w + t] = c
            out[y0 + h:y0 + h + t, x0 - t:x0 + w + t] = c
            out[y0:y0 + h, x0 - t:x0] = c
            out[y0:y0 + h, x0 + w:x0 + w + t] = c
    pil = Image.fromarray(out)
    draw, font = ImageDraw.Draw(pil), _font(_CAPTION_PX)
    for i, text in enumerate(captions):
        cx = pad + i * (side + pad) + side / 2
        for j, line in enumerate(str(text).split("\n")[:2]):
            draw.text((cx, pad + j * (_CAPTION_PX + 4)), _fit_text(line, font, side + pad - 2), font=font,
                      fill=(0, 0, 0), anchor="ma")
    return np.asarray(pil)


def stack_pngs(pngs: Sequence[bytes]) -> bytes:
    """PNGs one under the other (left-aligned, white fill) as one PNG."""
    arrays = [png_to_rgb(p) for p in pngs if p]
    if not arrays:
        raise ValueError("stack_pngs: nothing to stack")
    width = max(a.shape[1] for a in arrays)
    out = np.full((sum(a.shape[0] for a in arrays), width, 3), 255, dtype=np.uint8)
    y = 0
    for a in arrays:
        out[y:y + a.shape[0], :a.shape[1]] = a
        y += a.shape[0]
    return rgb_to_png(out)


class PngCache(LRUCache):
    """LRU of PNG bytes keyed by a panel's view state (a hashable tuple); thread-safe.

    Bounded by ``max_items`` and ``max_bytes``; a value larger than ``max_bytes`` is not kept.
    Numpy arrays (e.g. heat maps, reused when only the overlay's alpha changes) are held too,
    read-only.

    Example:
        >>> c = PngCache(max_items=1)
        >>> c.put(("page", 0), b"x"); c.put(("page", 1), b"y")
        >>> c.get(("page", 0)) is None, c.get(("page", 1))
        (True, b'y')
    """

    def __init__(self, max_items: int = 256, max_bytes: int = 128 * 2**20):
        super().__init__(max_bytes=max_bytes, max_items=max_items)

    def prepare(self, value: bytes | np.ndarray) -> bytes | np.ndarray:
        """PNG bytes as they are; arrays copied, read-only; anything else refused."""
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.flags.writeable = False
            return value
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        raise TypeError(f"PngCache holds bytes or numpy arrays, got {type(value).__name__}")
