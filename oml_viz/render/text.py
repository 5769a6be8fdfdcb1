"""Text drawn straight into the grid's pixels with PIL (DejaVu Sans, shipped with matplotlib).

Eighty matplotlib Text artists cost about a second to lay out and draw on 2 cores; PIL draws the
same titles in tens of milliseconds, and the text then scales with the grid in any axes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=16)
def get_font(size_px: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``size_px`` pixels (PIL's built-in font if it cannot be found)."""
    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    try:
        return ImageFont.truetype(font_manager.findfont(props, fallback_to_default=True), size_px)
    except OSError:
        return ImageFont.load_default(size_px)


def fit_line(text: str, font, max_width: float) -> str:
    """``text`` shortened in the middle with an ellipsis until it fits ``max_width`` pixels."""
    if font.getlength(text) <= max_width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        head = (keep + 1) // 2
        short = text[:head] + "…" + text[len(text) - (keep - head):]
        if font.getlength(short) <= max_width:
            return short
    return "…"


def draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    cx: float,
    y: float,
    font,
    fill=(0, 0, 0),
    max_width: float | None = None,
    anchor_bottom: bool = True,
    line_gap: int = 2,
) -> None:
    """Centre ``lines`` on ``cx``; the block ends at ``y`` (``anchor_bottom``) or is centred on it."""
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    step = ascent + descent + line_gap
    block = step * len(lines) - line_gap
    top = y - block if anchor_bottom else y - block / 2
    for i, line in enumerate(lines):
        if max_width is not None:
            line = fit_line(line, font, max_width)
        draw.text((cx, top + i * step), line, font=font, fill=fill, anchor="ma")


def text_canvas(img: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A PIL view to draw text on; copy back with ``np.asarray``."""
    pil = Image.fromarray(img)
    return pil, ImageDraw.Draw(pil)
