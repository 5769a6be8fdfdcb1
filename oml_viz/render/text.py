"""Text drawn straight into the grid's pixels (DejaVu Sans, shipped with matplotlib).

Eighty matplotlib Text artists cost about a second to lay out and draw on 2 cores. Here each line
is rendered once by PIL into a small alpha mask, kept in an LRU cache (a redrawn grid repeats its
titles), and blended into the grid with numpy; the text then also scales with the grid in any axes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

_LINE_GAP = 2


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


def wrap_line(text: str, font, max_width: float) -> list[str]:
    """``text`` broken into lines of at most ``max_width`` pixels, after a ``/`` where one fits
    (paths break at folders), else between characters; nothing is dropped.

    >>> wrap_line("/data/images/0001.png", get_font(11), 60)
    ['/data/', 'images/', '0001.png']
    """
    lines: list[str] = []
    rest = text
    while rest and font.getlength(rest) > max_width:
        cut = 1
        while cut < len(rest) and font.getlength(rest[:cut + 1]) <= max_width:
            cut += 1
        slash = rest.rfind("/", 0, cut)
        if 0 < slash < cut - 1:
            cut = slash + 1
        lines.append(rest[:cut])
        rest = rest[cut:]
    return [*lines, rest] if rest or not lines else lines


@lru_cache(maxsize=8192)
def text_mask(line: str, size_px: int, bold: bool = False, max_width: int | None = None) -> np.ndarray:
    """(line height, width) uint8 alpha mask of one line of text, shortened to ``max_width``."""
    font = get_font(size_px, bold)
    if max_width is not None:
        line = fit_line(line, font, max_width)
    ascent, descent = font.getmetrics()
    width = max(1, int(np.ceil(font.getlength(line))) + 1)
    im = Image.new("L", (width, ascent + descent), 0)
    ImageDraw.Draw(im).text((0, 0), line, font=font, fill=255, anchor="la")
    mask = np.asarray(im)
    mask.flags.writeable = False
    return mask


def blend_mask(img: np.ndarray, mask: np.ndarray, x0: int, y0: int, color) -> None:
    """Blend ``color`` into ``img`` (H, W, 3+) where ``mask`` is set, top-left at (x0, y0); clipped."""
    h, w = mask.shape
    H, W = img.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if xb <= xa or yb <= ya:
        return
    m = mask[ya - y0:yb - y0, xa - x0:xb - x0, None].astype(np.float32) * (1 / 255)
    region = img[ya:yb, xa:xb, :3]
    region[:] = (region * (1 - m) + np.asarray(color, np.float32) * m + 0.5).astype(np.uint8)


def draw_lines(
    img: np.ndarray,
    lines: list[str],
    cx: float,
    y: float,
    size_px: int,
    color=(0, 0, 0),
    *,
    max_width: int | None = None,
    anchor_bottom: bool = True,
    bold: bool = False,
    align: str = "center",
) -> None:
    """Draw ``lines`` centred on ``cx`` (or starting at it, ``align="left"``); the block ends at
    ``y`` (``anchor_bottom``) or is centred on it."""
    masks = [text_mask(line, size_px, bold, max_width) for line in lines]
    step = masks[0].shape[0] + _LINE_GAP if masks else 0
    block = step * len(masks) - _LINE_GAP
    top = y - block if anchor_bottom else y - block / 2
    for i, m in enumerate(masks):
        x0 = cx if align == "left" else cx - m.shape[1] / 2
        blend_mask(img, m, round(x0), round(top + i * step), color)
