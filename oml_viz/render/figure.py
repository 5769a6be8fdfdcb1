"""Figure helpers that need no pyplot (no global state: safe off the notebook's event loop)."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure_to_array(fig: Figure, dpi: float | None = None) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 (H, W, 3) array (for loggers, panels and tests).

    The one way oml_viz turns a figure into pixels. A figure on another canvas (a notebook's,
    pyplot's) is drawn with a temporary Agg canvas and left on its own canvas afterwards;
    ``dpi`` (default the figure's own) is restored afterwards too.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50)).shape
        (50, 100, 3)
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50), dpi=100).shape
        (100, 200, 3)
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    old, old_dpi = fig.canvas, fig.dpi
    canvas = old if isinstance(old, FigureCanvasAgg) else FigureCanvasAgg(fig)
    try:
        if dpi is not None and dpi != old_dpi:
            fig.set_dpi(dpi)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        return np.ascontiguousarray(rgba[..., :3])
    finally:
        if fig.dpi != old_dpi:
            fig.set_dpi(old_dpi)
        if canvas is not old:
            fig.set_canvas(old)
