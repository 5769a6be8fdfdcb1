"""matplotlib internals: ``FigureImage.make_image``, which the renderer calls but is not documented.

:class:`PixelImage` is a figure image that hands the renderer its pixels as they are when the
output has exactly the figure's size (matplotlib would resample even at scale 1: about 0.2 s for
a 10 x 8 queries grid on 2 cores), and scales the whole image to the output's pixels otherwise
(``savefig(dpi=...)``, PDF, SVG), where matplotlib's own ``figimage`` keeps pixel size and crops.
It overrides ``make_image(renderer, magnification, unsampled) -> (rgba, x, y, transform)`` and
finds its figure with ``get_figure(root=True)`` (matplotlib >= 3.10).

Example:
    >>> import numpy as np
    >>> from matplotlib.backends.backend_agg import FigureCanvasAgg
    >>> from matplotlib.figure import Figure
    >>> rgba = np.zeros((20, 30, 4), np.uint8); rgba[..., 3] = 255; rgba[:10, :, 0] = 200
    >>> fig = Figure(figsize=(0.3, 0.2), dpi=100); canvas = FigureCanvasAgg(fig)
    >>> fig.images.append(PixelImage(fig, rgba)); canvas.draw()
    >>> out = np.asarray(canvas.buffer_rgba())
    >>> out.shape, bool((out == rgba).all())
    ((20, 30, 4), True)
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import FigureImage
from PIL import Image


class PixelImage(FigureImage):
    """An RGBA uint8 (H, W, 4) image filling ``fig``, drawn pixel for pixel at the figure's size."""

    def __init__(self, fig: Figure, rgba: np.ndarray):
        super().__init__(fig, origin="upper")
        self.set_data(rgba)
        self._bottom_up = np.ascontiguousarray(rgba[::-1])  # the renderer's row order

    def make_image(self, renderer: Any, magnification: float = 1.0, unsampled: bool = False) -> tuple:
        fig = self.get_figure(root=True)
        w, h = fig.get_size_inches() * renderer.dpi * magnification
        size = (max(1, round(w)), max(1, round(h)))
        if size == (self._bottom_up.shape[1], self._bottom_up.shape[0]):
            return self._bottom_up, 0, 0, None
        resized = Image.fromarray(self._bottom_up, "RGBA").resize(size, Image.Resampling.LANCZOS)
        return np.array(resized), 0, 0, None
